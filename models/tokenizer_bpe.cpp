// Byte-level BPE encoding (tokenizer.ggml.model = "gpt2"): the text is cut into
// words by the pre-tokenizer, each word's bytes are mapped to printable
// characters (byte_to_unicode), and within a word the adjacent pair with the
// lowest merge rank is merged until no listed merge applies (ties: leftmost).
#include <queue>

#include "models/unicode.h"
#include "models/vocab.h"

namespace engine {

namespace {

struct Symbol {
  uint32_t start, len;  // bytes of the mapped word; len 0 once merged away
  int32_t prev, next;
};

struct Candidate {
  int32_t rank;
  int32_t left, right;
  uint32_t len;
  bool operator<(const Candidate& o) const {  // top = lowest rank, then leftmost
    return rank > o.rank || (rank == o.rank && left > o.left);
  }
};

void encode_word(const Vocab& v, std::string_view word, std::vector<int32_t>& out, std::string& mapped,
                 std::vector<Symbol>& sym, std::string& key) {
  mapped.clear();
  sym.clear();
  for (size_t i = 0; i < word.size(); i++) {
    const std::string& m = byte_to_unicode((uint8_t)word[i]);
    const int32_t k = (int32_t)i;
    sym.push_back({(uint32_t)mapped.size(), (uint32_t)m.size(), k - 1, i + 1 == word.size() ? -1 : k + 1});
    mapped += m;
  }
  if (v.ignore_merges || sym.size() == 1) {
    const int32_t id = v.find(mapped);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }

  std::priority_queue<Candidate> queue;
  const auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    key.assign(mapped, sym[l].start, sym[l].len);
    key += ' ';
    key.append(mapped, sym[r].start, sym[r].len);
    auto it = v.merge_rank.find(key);
    if (it == v.merge_rank.end()) return;
    queue.push({it->second, l, r, sym[l].len + sym[r].len});
  };
  for (int32_t i = 1; i < (int32_t)sym.size(); i++) consider(i - 1, i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& l = sym[c.left];
    Symbol& r = sym[c.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != c.len) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }

  for (int32_t i = 0; i != -1; i = sym[i].next) {
    const std::string_view piece = std::string_view(mapped).substr(sym[i].start, sym[i].len);
    const int32_t id = v.find(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    // A merge whose result is missing from the vocab (a malformed vocab):
    // fall back to the single mapped characters that are tokens.
    for (size_t p = 0; p < piece.size();) {
      const size_t n = std::min(utf8_len_from_lead((uint8_t)piece[p]), piece.size() - p);
      const int32_t cid = v.find(piece.substr(p, n));
      if (cid >= 0) out.push_back(cid);
      p += n;
    }
  }
}

}  // namespace

void bpe_encode(const Vocab& v, std::string_view text, std::vector<int32_t>& out) {
  std::string mapped, key;
  std::vector<Symbol> sym;
  for (std::string_view word : pretokenize(v.pre, text)) encode_word(v, word, out, mapped, sym, key);
}

}  // namespace engine
