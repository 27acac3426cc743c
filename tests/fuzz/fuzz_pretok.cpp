// libFuzzer target: every pre-tokenizer must cut any byte string (invalid
// UTF-8 included) into non-empty words that cover it exactly, and the regex
// engine must agree with the hand-written splitters on the GPT-2, Llama 3 and
// Qwen 2 patterns. The text is capped at 4 KiB: the split patterns can take
// time quadratic in a run of one character class (as std::regex does too),
// which is no bug but would only slow the fuzzer down.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "models/regex_split.h"
#include "models/vocab.h"

using namespace engine;

static void check_cover(const std::vector<std::string_view>& words, std::string_view text) {
  size_t at = 0;
  for (std::string_view w : words) {
    if (w.empty() || w.data() != text.data() + at) std::abort();
    at += w.size();
  }
  if (at != text.size()) std::abort();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text((const char*)data, size < 4096 ? size : 4096);
  for (size_t i = 0; i < (size_t)PreTokenizer::Count; i++) check_cover(pretokenize((PreTokenizer)i, text), text);

  // The single-pattern fast paths against the regex engine, compiled once.
  static const PreTokenizer kFast[] = {PreTokenizer::GPT2, PreTokenizer::Llama3, PreTokenizer::Qwen2};
  static const std::vector<SplitRegex> kRegex = [] {
    std::vector<SplitRegex> v;
    for (PreTokenizer p : kFast) v.emplace_back(pre_tokenizer_patterns(p).at(0));
    return v;
  }();
  const DecodedText chars(text);
  const std::vector<size_t> whole = chars.size() ? std::vector<size_t>{chars.size()} : std::vector<size_t>{};
  for (size_t i = 0; i < kRegex.size(); i++) {
    const std::vector<size_t> ends = kRegex[i].split(chars, whole);
    const std::vector<std::string_view> words = pretokenize(kFast[i], text);
    if (words.size() != ends.size()) std::abort();
    for (size_t w = 0; w < words.size(); w++)
      if (words[w].data() + words[w].size() != text.data() + chars.off[ends[w]]) std::abort();
  }
  return 0;
}
