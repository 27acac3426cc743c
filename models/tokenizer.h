// Text <-> token ids for GGUF models, reproducing llama.cpp's tokenizers:
// SentencePiece-style ("llama": score-driven merges, byte fallback, leading
// space) and byte-level BPE ("gpt2": merge ranks, regex-like pre-tokenizers
// chosen by tokenizer.ggml.pre). Everything comes from the file's metadata, so
// any vocab of these two families works. docs/tokenizers.md has the details.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "models/vocab.h"

namespace engine {

class GGUFFile;

class Tokenizer {
 public:
  // Throws Error when tokenizer.ggml.model is missing or unsupported, or the
  // vocab metadata is malformed.
  static std::unique_ptr<Tokenizer> from_gguf(const GGUFFile& f);
  explicit Tokenizer(Vocab v);

  int32_t n_vocab() const { return v_.n(); }

  // add_special: BOS (and EOS) as the vocab asks (tokenizer.ggml.add_bos_token /
  // add_eos_token; defaults: SPM and Llama-3 BPE add BOS, other BPE does not).
  // parse_special: text spelling a control token (e.g. "<|eot_id|>") becomes that
  // token. User-defined tokens are always matched, as in llama.cpp; control and
  // unknown tokens only with parse_special.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special = false) const;

  // The bytes one token stands for. Control and unknown tokens give "" unless
  // `special`, then their text. Throws Error for an id outside the vocab.
  std::string token_to_piece(int32_t id, bool special = false) const;
  // All pieces concatenated; for SPM with add_space_prefix the leading space of
  // the first non-empty piece is dropped (the space encode() put there).
  std::string decode(const std::vector<int32_t>& ids, bool special = false) const;

  int32_t bos() const { return v_.bos; }  // -1 when the vocab has none
  int32_t eos() const { return v_.eos; }
  bool add_bos() const { return v_.add_bos; }
  bool add_eos() const { return v_.add_eos; }
  bool is_eog(int32_t id) const;      // EOS, EOT/EOM, <|eot_id|>, <|im_end|>, <end_of_turn>, ...
  bool is_control(int32_t id) const;  // control or unknown token (rendered as "" by default)
  int32_t token_id(const std::string& text) const { return v_.find(text); }  // -1 if absent
  const std::string& token_text(int32_t id) const;  // as stored in the vocab
  const std::string& chat_template() const { return v_.chat_template; }  // "" when absent
  const Vocab& vocab() const { return v_; }

 private:
  Vocab v_;
};

// Detokenizes a stream of ids one at a time: push() returns only complete
// UTF-8 text, holding back a multi-byte character whose bytes are split over
// tokens until the rest arrives; flush() returns whatever is left. The
// concatenated output equals Tokenizer::decode of all ids pushed.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool special = false) : tok_(tok), special_(special) {}
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool special_;
  bool at_start_ = true;  // no non-empty piece yet: the SPM leading space is still to strip
  std::string pending_;   // bytes of an incomplete UTF-8 character
};

}  // namespace engine
