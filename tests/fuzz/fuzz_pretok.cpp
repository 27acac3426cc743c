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
  for (PreTokenizer p : {PreTokenizer::GPT2, PreTokenizer::Llama3, PreTokenizer::Qwen2}) {
    const std::vector<std::string>& pats = pre_tokenizer_patterns(p);
    if (pretokenize_patterns(pats, text, true) != pretokenize_patterns(pats, text, false)) std::abort();
  }
  return 0;
}
