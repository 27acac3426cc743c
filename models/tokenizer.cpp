// Tokenizer: special-token partitioning, the per-family encode drivers, and
// detokenization (whole and streaming).
#include "models/tokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "core/gguf.h"
#include "models/unicode.h"

namespace engine {

namespace {

// A run of plain text, or one special token found in the input.
struct Fragment {
  int32_t token;          // -1 for text
  std::string_view text;  // the text (for token == -1)
};

// Cuts text at every occurrence of a special token's spelling, trying tokens
// longest first over all fragments (llama.cpp's tokenizer_st_partition order),
// so "<|eot_id|>" wins over any shorter token inside it.
std::vector<Fragment> partition(const Vocab& v, std::string_view text, bool parse_special) {
  std::vector<Fragment> frags{{-1, text}};
  std::vector<Fragment> next;
  for (int32_t id : v.specials) {
    const TokenType t = v.type[id];
    if (!parse_special && (t == TokenType::Control || t == TokenType::Unknown)) continue;
    const std::string& s = v.text[id];
    next.clear();
    bool found = false;
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (size_t at; (at = rest.find(s)) != std::string_view::npos;) {
        found = true;
        if (at > 0) next.push_back({-1, rest.substr(0, at)});
        next.push_back({id, {}});
        rest.remove_prefix(at + s.size());
      }
      if (!rest.empty()) next.push_back({-1, rest});
    }
    if (found) frags.swap(next);
  }
  return frags;
}

// SPM vocabs spell spaces as U+2581 '▁'.
constexpr std::string_view kSpmSpace = "\xE2\x96\x81";

std::string spm_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  for (char c : s) {
    if (c == ' ') out += kSpmSpace;
    else out += c;
  }
  return out;
}

std::string spm_unescape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, kSpmSpace.size(), kSpmSpace) == 0) {
      out += ' ';
      i += kSpmSpace.size();
    } else {
      out += s[i++];
    }
  }
  return out;
}

// Byte-level BPE token text back to bytes. A character that is not the image
// of a byte (only in hand-made vocabs) is kept as it is.
std::string bpe_unmap(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const Utf8Char c = utf8_decode(s, i);
    const int b = c.valid ? unicode_to_byte(c.cp) : -1;
    if (b >= 0) out += (char)b;
    else out.append(s, i, c.len);
    i += c.len;
  }
  return out;
}

// Length of the UTF-8 sequence a lead byte announces; 1 for bytes that cannot start one.
size_t utf8_expected_len(uint8_t b) {
  if (b >= 0xC0 && b < 0xE0) return 2;
  if (b >= 0xE0 && b < 0xF0) return 3;
  if (b >= 0xF0 && b < 0xF8) return 4;
  return 1;
}

// Where the trailing incomplete UTF-8 character of s begins (s.size() if none).
size_t incomplete_tail(const std::string& s) {
  size_t p = s.size();
  for (size_t back = 0; back < 3 && p > 0 && ((uint8_t)s[p - 1] & 0xC0) == 0x80; back++) p--;
  if (p == 0) return s.size();
  const size_t lead = p - 1;
  const size_t need = utf8_expected_len((uint8_t)s[lead]);
  if (need > 1 && s.size() - lead < need) return lead;
  return s.size();
}

// The byte a "<0xHH>" token stands for ("" for any other spelling).
std::string byte_token_value(const std::string& text) {
  const auto hex = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  if (text.size() != 6 || text.compare(0, 3, "<0x") != 0 || text[5] != '>') return {};
  const int hi = hex(text[3]), lo = hex(text[4]);
  if (hi < 0 || lo < 0) return {};
  return std::string(1, (char)(hi * 16 + lo));
}

}  // namespace

Tokenizer::Tokenizer(Vocab v) : v_(std::move(v)) {}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GGUFFile& f) {
  return std::make_unique<Tokenizer>(Vocab::load(f));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_special && v_.add_bos) out.push_back(v_.bos);
  const std::vector<Fragment> frags =
      text.empty() ? std::vector<Fragment>{} : partition(v_, text, parse_special);
  if (v_.kind == VocabKind::SPM) {
    // Text that starts the input or follows a special token gets a leading
    // space, as SentencePiece's add_dummy_prefix does.
    bool after_special = true;
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        out.push_back(f.token);
        after_special = true;
        continue;
      }
      std::string s = v_.add_space_prefix && after_special ? std::string(kSpmSpace) : std::string();
      s += spm_escape(f.text);
      spm_encode(v_, s, out);
      after_special = false;
    }
  } else {
    for (const Fragment& f : frags) {
      if (f.token >= 0) out.push_back(f.token);
      else bpe_encode(v_, f.text, out);
    }
  }
  if (add_special && v_.add_eos) out.push_back(v_.eos);
  return out;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= v_.n())
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(v_.n() - 1) + ")");
  return v_.text[id];
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
  const std::string& text = token_text(id);
  switch (v_.type[id]) {
    case TokenType::Control:
    case TokenType::Unknown:
      return special ? text : std::string();
    case TokenType::UserDefined:
      return text;  // verbatim, as llama.cpp prints it
    case TokenType::Normal:
      return v_.kind == VocabKind::SPM ? spm_unescape(text) : bpe_unmap(text);
    case TokenType::Byte:
      return byte_token_value(text);
    default:
      return std::string();  // unused / undefined tokens print nothing
  }
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool special) const {
  StreamDecoder d(*this, special);
  std::string out;
  for (int32_t id : ids) out += d.push(id);
  return out + d.flush();
}

bool Tokenizer::is_eog(int32_t id) const { return std::binary_search(v_.eog.begin(), v_.eog.end(), id); }

bool Tokenizer::is_control(int32_t id) const {
  if (id < 0 || id >= v_.n()) return false;
  return v_.type[id] == TokenType::Control || v_.type[id] == TokenType::Unknown;
}

std::string StreamDecoder::push(int32_t id) {
  std::string piece = tok_.token_to_piece(id, special_);
  if (piece.empty()) return {};
  if (at_start_) {
    at_start_ = false;
    if (tok_.vocab().add_space_prefix && piece[0] == ' ') piece.erase(0, 1);
  }
  pending_ += piece;
  const size_t cut = incomplete_tail(pending_);
  std::string out = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace engine
