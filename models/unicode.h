// Unicode helpers for the tokenizers: UTF-8 decoding, the general-category
// class of a code point (from a generated range table), the White_Space
// property, and GPT-2's byte <-> printable-character mapping.
//
// Only what the pre-tokenizer splitters need: the regexes they imitate use
// \p{L}, \p{N}, \p{P} and \s, so a code point's major category class is enough.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace engine {

// Major general-category class of a code point. The order matches the
// generated table (scripts/gen_unicode_tables.py); do not reorder.
enum class UCat : uint8_t {
  Unassigned = 0,  // Cn
  Letter,          // L*   (\p{L})
  Number,          // N*   (\p{N})
  Punctuation,     // P*   (\p{P})
  Symbol,          // S*
  Mark,            // M*
  Separator,       // Z*
  Other,           // Cc, Cf, Cs, Co
};

UCat unicode_category(uint32_t cp);
// The Unicode White_Space property (what \s means in the tokenizer regexes).
bool unicode_is_whitespace(uint32_t cp);

// Byte length of a UTF-8 sequence judged by its first byte alone, as
// SentencePiece-style splitting does: continuation bytes count as 1.
inline size_t utf8_len_from_lead(uint8_t b) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[b >> 4];
}

// One decoded character. An invalid or truncated sequence decodes as a single
// byte with valid == false (cp is then U+FFFD), so callers never lose bytes.
struct Utf8Char {
  uint32_t cp;
  uint32_t len;
  bool valid;
};
Utf8Char utf8_decode(std::string_view s, size_t pos);
void utf8_append(std::string& out, uint32_t cp);

// GPT-2 byte-level BPE maps every byte to a printable code point so that
// vocab strings never contain raw control bytes or spaces (' ' -> 'Ġ').
// byte_to_unicode gives that code point's UTF-8; unicode_to_byte inverts it
// (-1 for a code point that is not the image of any byte).
const std::string& byte_to_unicode(uint8_t b);
int unicode_to_byte(uint32_t cp);

namespace unicode_detail {
extern const uint32_t kCategoryRuns[];  // (first code point << 8) | UCat, sorted
extern const size_t kCategoryRunCount;
}  // namespace unicode_detail

}  // namespace engine
