#include "models/byte_vocab.h"

#include <cstdio>

namespace engine {

void set_byte_vocab(GGUFWriter& w, const std::vector<std::pair<std::string, float>>& words) {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;  // SentencePiece: 1 normal, 2 unknown, 3 control, 6 byte
  auto add = [&](std::string t, float score, int32_t type) {
    tokens.push_back(std::move(t));
    scores.push_back(score);
    types.push_back(type);
  };
  add("<unk>", 0, 2);
  add("<s>", 0, 3);
  add("</s>", 0, 3);
  for (int b = 0; b < 256; b++) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    add(buf, 0, 6);
  }
  add("\xe2\x96\x81", -1, 1);  // "▁": a space is one token, not the 3 bytes of U+2581
  for (const auto& [text, score] : words) add(text, score, 1);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string("tokenizer.ggml.pre", "default");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
}

}  // namespace engine
