// A SentencePiece ("llama") vocabulary that any text tokenizes with, no training
// needed: <unk>, <s>, </s>, the 256 byte-fallback tokens <0x00>..<0xFF> and "▁" (so
// a space is one token, not the three bytes of U+2581) — kByteVocabSize tokens —
// then, optionally, more words. llama.cpp reads it (tokenizer.ggml.* metadata).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/gguf.h"

namespace engine {

constexpr int64_t kByteVocabSize = 260;

// Writes the vocabulary's metadata: the byte vocabulary, then `words` (text, score;
// normal tokens) after it. BOS is added to every sequence, EOS is not.
void set_byte_vocab(GGUFWriter& w, const std::vector<std::pair<std::string, float>>& words = {});

}  // namespace engine
