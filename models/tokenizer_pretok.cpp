// Pre-tokenizers for byte-level BPE: each is a list of split regexes
// (models/pretok_patterns.cpp) run one after the other. The GPT-2, Llama 3 and
// Qwen 2 patterns, by far the most used, run as hand-written splitters that
// follow llama.cpp's own fast paths step by step; every other pattern is
// interpreted by the regex engine (models/regex_split.h). Tests check that
// both give the same words for the three fast patterns.
#include <cstdint>
#include <memory>

#include "models/regex_split.h"
#include "models/unicode.h"
#include "models/vocab.h"

namespace engine {

namespace {

// A view of one chunk [lo, hi) of the text; outside it there are no characters
// (lookahead at the chunk end sees "nothing", as in the regex).
struct Chunk {
  const DecodedText& c;
  size_t lo, hi;
  std::vector<size_t>& ends;  // char index where each produced piece ends
  size_t prev;

  Chunk(const DecodedText& chars, size_t l, size_t h, std::vector<size_t>& e)
      : c(chars), lo(l), hi(h), ends(e), prev(l) {}
  bool in(size_t p) const { return p >= lo && p < hi; }
  uint32_t cp(size_t p) const { return in(p) ? c.cp[p] : 0xFFFFFFFFu; }
  bool letter(size_t p) const { return in(p) && c.cat[p] == UCat::Letter; }
  bool number(size_t p) const { return in(p) && c.cat[p] == UCat::Number; }
  bool space(size_t p) const { return in(p) && c.ws[p]; }
  // [^\s\p{L}\p{N}]: any present character that is none of those.
  bool other(size_t p) const { return in(p) && !c.ws[p] && c.cat[p] != UCat::Letter && c.cat[p] != UCat::Number; }
  void cut(size_t end) {
    if (end > prev) ends.push_back(end);
    prev = end;
  }
};

uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

// 's|'t|'re|'ve|'m|'ll|'d at p (case-insensitive when asked): its length, or 0.
size_t contraction(const Chunk& k, size_t p, bool any_case) {
  if (k.cp(p) != '\'' || !k.in(p + 1)) return 0;
  const auto low = [&](size_t q) { return any_case ? ascii_lower(k.cp(q)) : k.cp(q); };
  const uint32_t a = low(p + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (!k.in(p + 2)) return 0;
  const uint32_t b = low(p + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void split_gpt2(Chunk& k) {
  for (size_t pos = k.lo; pos < k.hi;) {
    if (size_t n = contraction(k, pos, false)) {
      k.cut(pos += n);
      continue;
    }
    const size_t p = k.cp(pos) == ' ' ? pos + 1 : pos;  // the optional leading space
    if (k.letter(p)) {
      for (pos = p; k.letter(pos);) pos++;
      k.cut(pos);
      continue;
    }
    if (k.number(p)) {
      for (pos = p; k.number(pos);) pos++;
      k.cut(pos);
      continue;
    }
    if (k.other(p)) {
      for (pos = p; k.other(pos);) pos++;
      k.cut(pos);
      continue;
    }
    size_t n = 0;
    while (k.space(pos + n)) n++;
    if (n > 1 && k.in(pos + n)) {
      k.cut(pos += n - 1);  // \s+(?!\S): leave the last space to the word after it
    } else if (n > 0) {
      k.cut(pos += n);
    } else {
      k.cut(++pos);  // unreachable: every character matches some branch
    }
  }
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
void split_llama3(Chunk& k, size_t max_digits) {
  const auto newline = [&](size_t p) { return k.cp(p) == '\r' || k.cp(p) == '\n'; };
  for (size_t pos = k.lo; pos < k.hi;) {
    if (size_t n = contraction(k, pos, true)) {
      k.cut(pos += n);
      continue;
    }
    if (!newline(pos) && !k.number(pos) && (k.letter(pos) || k.letter(pos + 1))) {
      for (pos++; k.letter(pos);) pos++;
      k.cut(pos);
      continue;
    }
    if (k.number(pos)) {
      size_t group = pos;
      while (k.number(pos)) {
        if (++pos - group >= max_digits) {
          k.cut(pos);
          group = pos;
        }
      }
      k.cut(pos);
      continue;
    }
    const size_t p = k.cp(pos) == ' ' ? pos + 1 : pos;
    if (k.other(p)) {
      for (pos = p; k.other(pos);) pos++;
      while (newline(pos)) pos++;
      k.cut(pos);
      continue;
    }
    size_t n = 0, after_newline = 0;
    for (; k.space(pos + n); n++)
      if (newline(pos + n)) after_newline = pos + n + 1;
    if (after_newline > 0) {
      k.cut(pos = after_newline);  // \s*[\r\n]+ ends at the last line break of the run
    } else if (n > 1 && k.in(pos + n)) {
      k.cut(pos += n - 1);
    } else if (n > 0) {
      k.cut(pos += n);
    } else {
      k.cut(++pos);
    }
  }
}

// Applies one hand-written splitter to every current piece.
template <class Stage>
std::vector<size_t> refine(const DecodedText& c, const std::vector<size_t>& ends, Stage stage) {
  std::vector<size_t> out;
  out.reserve(ends.size() * 2);
  size_t lo = 0;
  for (size_t hi : ends) {
    Chunk k(c, lo, hi, out);
    stage(k);
    lo = hi;
  }
  return out;
}

// One split pattern, ready to run: a fast path or a compiled regex.
struct Stage {
  enum Kind { Regex, Gpt2, Llama3, Qwen2 } kind = Regex;
  std::unique_ptr<SplitRegex> re;

  std::vector<size_t> run(const DecodedText& c, const std::vector<size_t>& ends) const {
    switch (kind) {
      case Gpt2: return refine(c, ends, split_gpt2);
      case Llama3: return refine(c, ends, [](Chunk& k) { split_llama3(k, 3); });
      case Qwen2: return refine(c, ends, [](Chunk& k) { split_llama3(k, 1); });
      case Regex: break;
    }
    return re->split(c, ends);
  }
};

std::vector<Stage> compile(const std::vector<std::string>& patterns, bool fast_paths) {
  std::vector<Stage> stages(patterns.size());
  for (size_t i = 0; i < patterns.size(); i++) {
    const std::string& p = patterns[i];
    Stage& s = stages[i];
    if (fast_paths && p == pre_tokenizer_patterns(PreTokenizer::GPT2)[0]) s.kind = Stage::Gpt2;
    else if (fast_paths && p == pre_tokenizer_patterns(PreTokenizer::Llama3)[0]) s.kind = Stage::Llama3;
    else if (fast_paths && p == pre_tokenizer_patterns(PreTokenizer::Qwen2)[0]) s.kind = Stage::Qwen2;
    else s.re = std::make_unique<SplitRegex>(p);
  }
  return stages;
}

std::vector<std::string_view> run_stages(const std::vector<Stage>& stages, std::string_view text) {
  const DecodedText c(text);
  std::vector<size_t> ends;
  if (c.size() > 0) ends.push_back(c.size());
  for (const Stage& s : stages) ends = s.run(c, ends);
  std::vector<std::string_view> words;
  words.reserve(ends.size());
  size_t lo = 0;
  for (size_t hi : ends) {
    words.push_back(text.substr(c.off[lo], c.off[hi] - c.off[lo]));
    lo = hi;
  }
  return words;
}

}  // namespace

std::vector<std::string_view> pretokenize(PreTokenizer pre, std::string_view text) {
  // Every pre-tokenizer compiled once, on first use (thread-safe static init).
  static const auto all = [] {
    std::vector<std::vector<Stage>> v;
    for (size_t i = 0; i < (size_t)PreTokenizer::Count; i++)
      v.push_back(compile(pre_tokenizer_patterns((PreTokenizer)i), true));
    return v;
  }();
  return run_stages(all[(size_t)pre], text);
}

std::vector<std::string_view> pretokenize_patterns(const std::vector<std::string>& patterns, std::string_view text,
                                                   bool fast_paths) {
  return run_stages(compile(patterns, fast_paths), text);
}

}  // namespace engine
