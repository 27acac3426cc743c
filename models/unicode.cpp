#include "models/unicode.h"

#include <algorithm>
#include <array>

namespace engine {

UCat unicode_category(uint32_t cp) {
  using namespace unicode_detail;
  // ASCII is most of the text we see: answer it from a small table built once.
  static const std::array<UCat, 128> ascii = [] {
    std::array<UCat, 128> t{};
    size_t r = 0;
    for (uint32_t c = 0; c < 128; c++) {
      while (r + 1 < kCategoryRunCount && (kCategoryRuns[r + 1] >> 8) <= c) r++;
      t[c] = (UCat)(kCategoryRuns[r] & 0xff);
    }
    return t;
  }();
  if (cp < 128) return ascii[cp];
  if (cp > 0x10FFFF) return UCat::Unassigned;
  // The last run starting at or before cp.
  const uint32_t* end = kCategoryRuns + kCategoryRunCount;
  const uint32_t* it = std::upper_bound(kCategoryRuns, end, (cp << 8) | 0xff);
  return (UCat)(*(it - 1) & 0xff);
}

bool unicode_is_whitespace(uint32_t cp) {
  // White_Space from PropList.txt; it has not changed in many Unicode versions.
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

Utf8Char utf8_decode(std::string_view s, size_t pos) {
  const auto byte = [&](size_t k) { return (uint8_t)s[pos + k]; };
  const auto cont = [&](size_t k) { return pos + k < s.size() && (byte(k) & 0xC0) == 0x80; };
  const uint8_t b0 = byte(0);
  if (b0 < 0x80) return {b0, 1, true};
  // Same acceptance as llama.cpp's decoder: lead byte plus continuation bytes
  // (overlong forms and surrogates are not rejected).
  if ((b0 & 0xE0) == 0xC0 && cont(1)) return {((b0 & 0x1Fu) << 6) | (byte(1) & 0x3Fu), 2, true};
  if ((b0 & 0xF0) == 0xE0 && cont(1) && cont(2))
    return {((b0 & 0x0Fu) << 12) | ((byte(1) & 0x3Fu) << 6) | (byte(2) & 0x3Fu), 3, true};
  if ((b0 & 0xF8) == 0xF0 && cont(1) && cont(2) && cont(3))
    return {((b0 & 0x07u) << 18) | ((byte(1) & 0x3Fu) << 12) | ((byte(2) & 0x3Fu) << 6) | (byte(3) & 0x3Fu), 4,
            true};
  return {0xFFFD, 1, false};
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += (char)cp;
  } else if (cp < 0x800) {
    out += (char)(0xC0 | (cp >> 6));
    out += (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += (char)(0xE0 | (cp >> 12));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  } else {
    out += (char)(0xF0 | (cp >> 18));
    out += (char)(0x80 | ((cp >> 12) & 0x3F));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  }
}

namespace {
// GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves,
// the other 68 bytes take code points 256, 257, ... in byte order.
struct ByteMap {
  std::array<std::string, 256> to_utf8;
  std::array<int16_t, 512> from_cp;  // every image is below 256 + 68
  ByteMap() {
    from_cp.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; b++) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? b : next++;
      utf8_append(to_utf8[b], cp);
      from_cp[cp] = (int16_t)b;
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}
}  // namespace

const std::string& byte_to_unicode(uint8_t b) { return byte_map().to_utf8[b]; }

int unicode_to_byte(uint32_t cp) { return cp < 512 ? byte_map().from_cp[cp] : -1; }

}  // namespace engine
