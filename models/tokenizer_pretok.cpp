// Pre-tokenizers for byte-level BPE: hand-written equivalents of the split
// regexes of GPT-2, Llama 3 and Qwen 2 (and llama.cpp's default chain),
// working on decoded code points with the Unicode category table. They follow
// llama.cpp's hand-written splitters step by step, so the words match it
// exactly; std::regex has no \p{..} classes and would be far slower.
#include <cstdint>

#include "models/unicode.h"
#include "models/vocab.h"

namespace engine {

namespace {

// The text as code points with byte offsets. Invalid UTF-8 bytes become
// single "characters" of class Symbol (like U+FFFD) but keep their own bytes.
struct Chars {
  std::vector<uint32_t> cp;
  std::vector<uint32_t> off;  // byte offset of each char; off[n] = text size
  std::vector<UCat> cat;
  std::vector<uint8_t> ws;

  explicit Chars(std::string_view text) {
    for (size_t pos = 0; pos < text.size();) {
      const Utf8Char c = utf8_decode(text, pos);
      cp.push_back(c.cp);
      off.push_back((uint32_t)pos);
      cat.push_back(c.valid ? unicode_category(c.cp) : UCat::Symbol);
      ws.push_back(c.valid && unicode_is_whitespace(c.cp));
      pos += c.len;
    }
    off.push_back((uint32_t)text.size());
  }
  size_t size() const { return cp.size(); }
};

// A view of one chunk [lo, hi) of the text; outside it there are no characters
// (lookahead at the chunk end sees "nothing", as in the regex).
struct Chunk {
  const Chars& c;
  size_t lo, hi;
  std::vector<size_t>& ends;  // char index where each produced piece ends
  size_t prev;

  Chunk(const Chars& chars, size_t l, size_t h, std::vector<size_t>& e) : c(chars), lo(l), hi(h), ends(e), prev(l) {}
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

// Splits at every leftmost match of a pattern (match(p) = its length at p, or
// 0): matches and the text between them become separate pieces, as llama.cpp's
// std::regex path does.
template <class Match>
void split_matches(Chunk& k, Match match) {
  for (size_t pos = k.lo; pos < k.hi;) {
    if (size_t n = match(pos)) {
      k.cut(pos);
      k.cut(pos += n);
    } else {
      pos++;
    }
  }
  k.cut(k.hi);
}

// The length of the run of characters at p satisfying pred.
template <class Pred>
size_t run_length(const Chunk& k, size_t p, Pred pred) {
  size_t n = 0;
  while (k.in(p + n) && pred(p + n)) n++;
  return n;
}

// Applies one splitting stage to every current piece.
template <class Stage>
std::vector<size_t> refine(const Chars& c, const std::vector<size_t>& ends, Stage stage) {
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

}  // namespace

std::vector<std::string_view> pretokenize(PreTokenizer pre, std::string_view text) {
  const Chars c(text);
  std::vector<size_t> ends;
  if (c.size() > 0) ends.push_back(c.size());
  switch (pre) {
    case PreTokenizer::GPT2:
      ends = refine(c, ends, split_gpt2);
      break;
    case PreTokenizer::Llama3:
      ends = refine(c, ends, [](Chunk& k) { split_llama3(k, 3); });
      break;
    case PreTokenizer::Qwen2:
      ends = refine(c, ends, [](Chunk& k) { split_llama3(k, 1); });
      break;
    case PreTokenizer::Default:
      // [\p{P}\$\+<=>\^~\|]+ , the GPT-2 regex, \p{N}+ , [0-9][0-9][0-9] in turn.
      ends = refine(c, ends, [&](Chunk& k) {
        split_matches(k, [&](size_t p) {
          return run_length(k, p, [&](size_t q) {
            const uint32_t ch = c.cp[q];
            return c.cat[q] == UCat::Punctuation || ch == '$' || ch == '+' || ch == '<' || ch == '=' || ch == '>' ||
                   ch == '^' || ch == '~' || ch == '|';
          });
        });
      });
      ends = refine(c, ends, split_gpt2);
      ends = refine(c, ends, [&](Chunk& k) {
        split_matches(k, [&](size_t p) { return run_length(k, p, [&](size_t q) { return k.number(q); }); });
      });
      ends = refine(c, ends, [&](Chunk& k) {
        split_matches(k, [&](size_t p) {
          const auto digit = [&](size_t q) { return k.in(q) && c.cp[q] >= '0' && c.cp[q] <= '9'; };
          return digit(p) && digit(p + 1) && digit(p + 2) ? size_t(3) : size_t(0);
        });
      });
      break;
  }
  std::vector<std::string_view> words;
  words.reserve(ends.size());
  size_t lo = 0;
  for (size_t hi : ends) {
    words.push_back(text.substr(c.off[lo], c.off[hi] - c.off[lo]));
    lo = hi;
  }
  return words;
}

}  // namespace engine
