// SentencePiece-style encoding (tokenizer.ggml.model = "llama"), as llama.cpp
// does it: start from single UTF-8 characters and repeatedly merge the adjacent
// pair whose concatenation is the vocab entry with the highest score (ties:
// leftmost). A priority queue holds candidate pairs; entries made stale by an
// earlier merge are recognized and dropped when popped. Pieces that are not in
// the vocab at the end fall back to <0xHH> byte tokens.
#include <queue>

#include "models/vocab.h"
#include "models/unicode.h"

namespace engine {

namespace {

struct Symbol {
  uint32_t start, len;  // bytes of the text; len 0 once merged into its left neighbour
  int32_t prev, next;   // linked list of live symbols
};

struct Candidate {
  float score;
  int32_t left, right;
  uint32_t len;  // byte length of the merged text when the candidate was made
  bool operator<(const Candidate& o) const {  // the top of the queue is the best merge
    return score < o.score || (score == o.score && left > o.left);
  }
};

}  // namespace

void spm_encode(const Vocab& v, std::string_view text, std::vector<int32_t>& out) {
  std::vector<Symbol> sym;
  sym.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    // Split by the lead byte alone (malformed UTF-8 is cut the same way; its
    // bytes end up as byte tokens).
    const uint32_t n = (uint32_t)std::min(utf8_len_from_lead((uint8_t)text[pos]), text.size() - pos);
    const int32_t i = (int32_t)sym.size();
    sym.push_back({(uint32_t)pos, n, i - 1, pos + n == text.size() ? -1 : i + 1});
    pos += n;
  }

  std::priority_queue<Candidate> queue;
  const auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const uint32_t len = sym[l].len + sym[r].len;
    const int32_t id = v.find(text.substr(sym[l].start, len));
    if (id < 0) return;
    queue.push({v.score[id], l, r, len});
  };
  for (int32_t i = 1; i < (int32_t)sym.size(); i++) consider(i - 1, i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& l = sym[c.left];
    Symbol& r = sym[c.right];
    // Symbols only grow, so an unchanged total length means both are still as they were.
    if (l.len == 0 || r.len == 0 || l.len + r.len != c.len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }

  for (int32_t i = sym.empty() ? -1 : 0; i != -1; i = sym[i].next) {
    const std::string_view piece = text.substr(sym[i].start, sym[i].len);
    const int32_t id = v.find(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    // Every merge produced a vocab entry, so only unmerged characters get here.
    for (char b : piece) {
      const int32_t bt = v.byte_token[(uint8_t)b];
      if (bt >= 0) out.push_back(bt);
      else if (v.unk >= 0) out.push_back(v.unk);
    }
  }
}

}  // namespace engine
