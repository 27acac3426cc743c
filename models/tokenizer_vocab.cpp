// Vocab::load: the tokenizer.* metadata of a GGUF file, with llama.cpp's
// defaults where a key is absent, so any vocab of a supported family loads
// without code changes.
#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "core/gguf.h"
#include "models/vocab.h"

namespace engine {

namespace {

struct PreEntry {
  const char* name;
  PreTokenizer pre;
  bool ignore_merges;  // a word that is itself a token is not merged
  bool add_bos;        // BOS by default (an add_bos_token key still wins)
};
// Every tokenizer.ggml.pre name llama.cpp accepts (src/llama-vocab.cpp),
// with the flags it sets that change token ids. Its clean_spaces flag only
// touches detokenized text, which is kept byte-exact here (docs/tokenizers.md).
constexpr PreEntry kPreNames[] = {
    {"default", PreTokenizer::Default, false, false},
    {"llama3", PreTokenizer::Llama3, true, true},
    {"llama-v3", PreTokenizer::Llama3, true, true},
    {"llama-bpe", PreTokenizer::Llama3, true, true},
    {"falcon3", PreTokenizer::Llama3, true, true},
    {"pixtral", PreTokenizer::Llama3, true, true},
    {"dbrx", PreTokenizer::Llama3, false, false},
    {"smaug-bpe", PreTokenizer::Llama3, false, false},
    {"chatglm-bpe", PreTokenizer::Llama3, false, false},
    {"deepseek-llm", PreTokenizer::DeepSeekLLM, false, false},
    {"deepseek-coder", PreTokenizer::DeepSeekCoder, false, false},
    {"deepseek-v3", PreTokenizer::DeepSeekV3, false, false},
    {"falcon", PreTokenizer::Falcon, false, false},
    {"gpt-2", PreTokenizer::GPT2, false, false},
    {"phi-2", PreTokenizer::GPT2, false, false},
    {"jina-es", PreTokenizer::GPT2, false, false},
    {"jina-de", PreTokenizer::GPT2, false, false},
    {"gigachat", PreTokenizer::GPT2, false, false},
    {"jina-v1-en", PreTokenizer::GPT2, false, false},
    {"jina-v2-es", PreTokenizer::GPT2, false, false},
    {"jina-v2-de", PreTokenizer::GPT2, false, false},
    {"jina-v2-code", PreTokenizer::GPT2, false, false},
    {"roberta-bpe", PreTokenizer::GPT2, false, false},
    {"mpt", PreTokenizer::GPT2, false, false},
    {"olmo", PreTokenizer::GPT2, false, false},
    {"jais", PreTokenizer::GPT2, false, false},
    {"starcoder", PreTokenizer::StarCoder, false, false},
    {"refact", PreTokenizer::StarCoder, false, false},
    {"command-r", PreTokenizer::StarCoder, false, false},
    {"smollm", PreTokenizer::StarCoder, false, false},
    {"codeshell", PreTokenizer::StarCoder, false, false},
    {"exaone", PreTokenizer::StarCoder, false, false},
    {"minerva-7b", PreTokenizer::StarCoder, false, false},
    {"qwen2", PreTokenizer::Qwen2, false, false},
    {"deepseek-r1-qwen", PreTokenizer::Qwen2, false, false},
    {"megrez", PreTokenizer::Qwen2, false, false},
    {"stablelm2", PreTokenizer::Qwen2, false, false},
    {"poro-chat", PreTokenizer::Bloom, false, false},
    {"bloom", PreTokenizer::Bloom, false, false},
    {"gpt3-finnish", PreTokenizer::Bloom, false, false},
    {"viking", PreTokenizer::Viking, false, false},
    {"tekken", PreTokenizer::Tekken, true, true},
    {"chameleon", PreTokenizer::Chameleon, false, true},
};

// Token texts that end a generation (llama.cpp recognizes them by text because
// converters rarely record them as EOS). They are also forced to control type.
constexpr const char* kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",  // DeepSeek's <｜end▁of▁sentence｜>
};

// A special-token id from metadata; out-of-range values (e.g. 0xFFFFFFFF for
// "none") keep the default, as llama.cpp does.
int32_t special_id(const GGUFFile& f, const char* key, int32_t def, int32_t n) {
  const int64_t v = f.get_int(key, def);
  if (v >= 0 && v < n) return (int32_t)v;
  return def >= 0 && def < n ? def : -1;
}

}  // namespace

bool pre_tokenizer_from_name(const std::string& name, PreTokenizer* out, bool* ignore_merges, bool* add_bos) {
  for (const PreEntry& e : kPreNames) {
    if (name != e.name) continue;
    *out = e.pre;
    *ignore_merges = e.ignore_merges;
    *add_bos = e.add_bos;
    return true;
  }
  return false;
}

std::string pre_tokenizer_names() {
  std::string s;
  for (const PreEntry& e : kPreNames) {
    if (!s.empty()) s += ", ";
    s += e.name;
  }
  return s;
}

std::string tokenizer_summary(const GGUFFile& f) {
  const std::string model = f.get_string("tokenizer.ggml.model", "");
  if (model.empty()) return "(none)";
  if (model == "llama") return "llama (SentencePiece)";
  if (model != "gpt2") return model + " (not supported)";
  const std::string pre = f.get_string("tokenizer.ggml.pre", "default");
  PreTokenizer p;
  bool ignore_merges, add_bos;
  std::string s = "gpt2 (byte-level BPE), pre-tokenizer ";
  s += pre;
  if (!pre_tokenizer_from_name(pre, &p, &ignore_merges, &add_bos)) s += " (not supported)";
  return s;
}

Vocab Vocab::load(const GGUFFile& f) {
  Vocab v;
  const std::string model = f.get_string("tokenizer.ggml.model", "");
  if (model.empty()) f.fail("has no tokenizer (tokenizer.ggml.model is missing)");
  if (model == "llama") {
    v.kind = VocabKind::SPM;
  } else if (model == "gpt2") {
    v.kind = VocabKind::BPE;
  } else {
    f.fail("tokenizer.ggml.model '" + model + "' is not supported (supported: 'llama' = SentencePiece, 'gpt2' = byte-level BPE)");
  }

  const GGUFValue* toks = f.find("tokenizer.ggml.tokens");
  if (!toks || toks->type != GGUFType::ARRAY || toks->elem_type != GGUFType::STRING || toks->strs.empty())
    f.fail("tokenizer.ggml.tokens is missing or not a non-empty string array");
  v.text = toks->strs;
  const int32_t n = v.n();
  if ((uint64_t)n != toks->strs.size()) f.fail("tokenizer has too many tokens");

  v.score.assign(n, 0.0f);
  if (const GGUFValue* s = f.find("tokenizer.ggml.scores")) {
    if (s->type != GGUFType::ARRAY || s->count != (uint64_t)n)
      f.fail("tokenizer.ggml.scores must be an array with one score per token");
    for (int32_t i = 0; i < n; i++) v.score[i] = (float)s->array_float(i);
  }
  v.type.assign(n, TokenType::Normal);
  if (const GGUFValue* t = f.find("tokenizer.ggml.token_type")) {
    if (t->type != GGUFType::ARRAY || t->count != (uint64_t)n)
      f.fail("tokenizer.ggml.token_type must be an array with one type per token");
    for (int32_t i = 0; i < n; i++) {
      const int64_t x = t->array_int(i);
      v.type[i] = x >= 0 && x <= 6 ? (TokenType)x : TokenType::Undefined;
    }
  }
  v.id_of.reserve(n);
  for (int32_t i = 0; i < n; i++) v.id_of[v.text[i]] = i;

  // Family defaults (llama.cpp's), then the explicit keys.
  int32_t def_bos = -1, def_eos = -1, def_unk = -1;
  if (v.kind == VocabKind::SPM) {
    def_bos = 1, def_eos = 2, def_unk = 0;
    v.add_bos = true;
    v.add_space_prefix = true;
    v.pre_name = "default";
    v.byte_token.assign(256, -1);
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
      const char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
      int32_t id = v.find(name);
      if (id < 0) id = v.find(std::string(1, (char)b));  // vocabs that store raw bytes
      v.byte_token[b] = id;
    }
  } else {
    v.pre_name = f.get_string("tokenizer.ggml.pre", "default");
    bool add_bos = false;
    if (!pre_tokenizer_from_name(v.pre_name, &v.pre, &v.ignore_merges, &add_bos)) {
      std::string msg = "tokenizer.ggml.pre '";
      msg += v.pre_name;
      msg += "' is not supported (supported: ";
      msg += pre_tokenizer_names();
      msg += ")";
      f.fail(msg);
    }
    v.add_bos = add_bos;

    const GGUFValue* m = f.find("tokenizer.ggml.merges");
    if (!m || m->type != GGUFType::ARRAY || m->elem_type != GGUFType::STRING)
      f.fail("byte-level BPE tokenizer without tokenizer.ggml.merges");
    v.merge_rank.reserve(m->strs.size());
    for (size_t r = 0; r < m->strs.size(); r++) {
      const std::string& line = m->strs[r];
      // "left right": the separator is the first space after the first character.
      const size_t sp = line.find(' ', 1);
      if (sp == std::string::npos || sp + 1 >= line.size())
        f.fail("tokenizer.ggml.merges[" + std::to_string(r) + "] is not of the form 'left right'");
      v.merge_rank.emplace(line, (int32_t)r);  // first occurrence wins
    }
  }
  v.bos = special_id(f, "tokenizer.ggml.bos_token_id", def_bos, n);
  v.eos = special_id(f, "tokenizer.ggml.eos_token_id", def_eos, n);
  v.unk = special_id(f, "tokenizer.ggml.unknown_token_id", def_unk, n);
  v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", v.add_bos) && v.bos >= 0;
  v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false) && v.eos >= 0;
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", v.add_space_prefix);

  // End of generation: EOS, EOT/EOM when given, and the usual end-of-turn texts.
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    const int32_t id = special_id(f, key, -1, n);
    if (id >= 0) v.eog.push_back(id);
  }
  if (v.eos >= 0) v.eog.push_back(v.eos);
  for (const char* t : kEogTexts) {
    const int32_t id = v.find(t);
    if (id < 0) continue;
    v.eog.push_back(id);
    v.type[id] = TokenType::Control;  // so it is never produced from plain text nor printed
  }
  std::sort(v.eog.begin(), v.eog.end());
  v.eog.erase(std::unique(v.eog.begin(), v.eog.end()), v.eog.end());

  for (int32_t i = 0; i < n; i++) {
    const TokenType t = v.type[i];
    if ((t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown) && !v.text[i].empty())
      v.specials.push_back(i);
  }
  std::stable_sort(v.specials.begin(), v.specials.end(),
                   [&](int32_t a, int32_t b) { return v.text[a].size() > v.text[b].size(); });

  if (const GGUFValue* ct = f.find("tokenizer.chat_template"); ct && ct->type == GGUFType::STRING)
    v.chat_template = ct->str;
  return v;
}

}  // namespace engine
