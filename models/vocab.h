// Tokenizer internals: the vocabulary as read from GGUF metadata, and the
// building blocks the Tokenizer (models/tokenizer.h) is made of. Kept apart
// from the public header so tests can reach the pieces (pre-tokenizer splits,
// single-fragment encoders) without widening the Tokenizer API.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace engine {

class GGUFFile;

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

enum class VocabKind { SPM, BPE };  // tokenizer.ggml.model "llama" / "gpt2"

// How byte-level BPE text is cut into words before merging (tokenizer.ggml.pre):
// one value per distinct list of split regexes in llama.cpp; the patterns are
// in models/pretok_patterns.cpp, the names that select them in
// models/tokenizer_vocab.cpp. Keep the order of pre_tokenizer_patterns().
enum class PreTokenizer {
  Default,        // punctuation runs, the GPT-2 regex, digit runs, 3-digit groups
  GPT2,           // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
  Llama3,         // contractions, [^\r\n\p{L}\p{N}]?\p{L}+, \p{N}{1,3}, punctuation with newlines, ...
  Qwen2,          // the Llama 3 regex with single digits
  DeepSeekLLM,    // newlines, Latin/Greek/Cyrillic letter runs, ASCII/fullwidth punctuation, CJK runs, digits
  DeepSeekCoder,  // newlines, letter runs, punctuation runs, CJK runs, single digits
  DeepSeekV3,     // 3-digit groups, CJK/kana runs, then a Llama 3 like regex over \p{L}\p{M} / \p{P}\p{S}
  Falcon,         // the default chain with ` among the symbols and no digit-run stage
  StarCoder,      // single digits, then the GPT-2 regex
  Bloom,          //  ?[^(\s|.,!?…。，、।۔،)]+ (also poro, gpt3-finnish)
  Viking,         // the Bloom regex, then single digits
  Tekken,         // Llama 3 like, with camel-case splits of letter runs
  Chameleon,      // sentinel and image tokens, whitespace runs, digits, punctuation, the GPT-2 regex
  Count
};

// Lets an unordered_map keyed by std::string be searched with a string_view
// (no temporary string per lookup in the merge loops).
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringViewHash, std::equal_to<>>;

struct Vocab {
  VocabKind kind = VocabKind::SPM;
  PreTokenizer pre = PreTokenizer::Default;
  std::string pre_name;  // tokenizer.ggml.pre as written (or "default")

  std::vector<std::string> text;  // token strings as stored (SPM: '▁' for space; BPE: byte-mapped)
  std::vector<float> score;       // SPM merge priority; 0 when absent
  std::vector<TokenType> type;
  StringIdMap id_of;              // text -> id; on duplicates the later id wins, as in llama.cpp
  StringIdMap merge_rank;         // BPE: "left right" (the merge line itself) -> rank

  int32_t bos = -1, eos = -1, unk = -1;  // -1: none
  bool add_bos = false, add_eos = false;
  bool add_space_prefix = false;  // SPM: a space is put before text that starts a fragment
  bool ignore_merges = false;     // BPE: a word that is itself a token is not merged (Llama 3)
  std::vector<int32_t> byte_token;  // SPM: id for each byte value (<0xHH>), -1 if none
  // Ids of control, user-defined and unknown tokens, longest text first: the
  // order in which text is searched for them (llama.cpp's partition order).
  std::vector<int32_t> specials;
  std::vector<int32_t> eog;  // end-of-generation ids, sorted
  std::string chat_template;

  int32_t n() const { return (int32_t)text.size(); }
  int32_t find(std::string_view s) const {
    auto it = id_of.find(s);
    return it == id_of.end() ? -1 : it->second;
  }

  // Reads tokenizer.* metadata. Throws Error naming the file when the
  // tokenizer is missing, malformed or of an unsupported kind.
  static Vocab load(const GGUFFile& f);
};

// Maps a tokenizer.ggml.pre name to its splitter and the flags llama.cpp sets
// with it; false for an unknown name.
bool pre_tokenizer_from_name(const std::string& name, PreTokenizer* out, bool* ignore_merges, bool* add_bos);
// All accepted tokenizer.ggml.pre names, comma-separated (for error messages and docs).
std::string pre_tokenizer_names();
// A one-line description of a GGUF file's tokenizer (model kind and
// pre-tokenizer, or why it cannot be used), for `engine info`.
std::string tokenizer_summary(const GGUFFile& f);

// The split regexes of a pre-tokenizer, in the order they are applied.
const std::vector<std::string>& pre_tokenizer_patterns(PreTokenizer pre);

// Cuts text into the words a byte-level BPE merges separately. The views
// point into `text` and cover it exactly, in order.
std::vector<std::string_view> pretokenize(PreTokenizer pre, std::string_view text);
// The same for an explicit list of patterns (compiled on each call). With
// fast_paths the GPT-2, Llama 3 and Qwen 2 patterns run as hand-written
// splitters (as llama.cpp does), otherwise every pattern goes through the
// regex engine; both give the same words. Throws Error for a bad pattern.
std::vector<std::string_view> pretokenize_patterns(const std::vector<std::string>& patterns, std::string_view text,
                                                   bool fast_paths = true);

// Encoders for one fragment of plain text (no special-token parsing); they append to `out`.
// spm_encode expects spaces already replaced by '▁' (and the prefix space added).
void spm_encode(const Vocab& v, std::string_view text, std::vector<int32_t>& out);
void bpe_encode(const Vocab& v, std::string_view text, std::vector<int32_t>& out);

}  // namespace engine
