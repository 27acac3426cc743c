// SplitRegex's matcher: backtracking in continuation-passing style. Each
// sequence item is tried with "the rest of the match" as a continuation, so
// alternation is leftmost-first and quantifiers greedy, as in Perl/ECMAScript.
#include <algorithm>

#include "models/regex_nodes.h"
#include "models/regex_split.h"

namespace engine {

using namespace regex_detail;

DecodedText::DecodedText(std::string_view text) {
  cp.reserve(text.size());
  off.reserve(text.size() + 1);
  cat.reserve(text.size());
  ws.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const Utf8Char c = utf8_decode(text, pos);
    cp.push_back(c.cp);
    off.push_back((uint32_t)pos);
    cat.push_back(c.valid ? unicode_category(c.cp) : UCat::Symbol);
    ws.push_back(c.valid && unicode_is_whitespace(c.cp));
    pos += c.len;
  }
  off.push_back((uint32_t)text.size());
}

namespace {

// A non-owning reference to "the rest of the match": called with the position
// reached, true when the whole match succeeds from there.
class Cont {
 public:
  template <class F>
  explicit Cont(const F& f) : obj_(&f), fn_([](const void* o, size_t p) { return (*static_cast<const F*>(o))(p); }) {}
  bool operator()(size_t p) const { return fn_(obj_, p); }

 private:
  const void* obj_;
  bool (*fn_)(const void*, size_t);
};

// Matches within one subject [lo, hi). It remembers, per Char node, the last
// run of characters found to satisfy it, so the many attempts a split makes
// at successive positions inside one long run (say of white space) do not
// rescan it each time.
class Matcher {
 public:
  Matcher(const DecodedText& t, size_t lo, size_t hi, uint32_t n_slots)
      : t_(t), lo_(lo), hi_(hi), runs_(n_slots, {0, 0}) {}

  // Moves to another subject of the same text (forgetting the cached runs).
  void subject(size_t lo, size_t hi) {
    lo_ = lo;
    hi_ = hi;
    runs_.assign(runs_.size(), {0, 0});
  }

  bool alts(const Alts& a, size_t pos, Cont k) const {
    for (const Seq& s : a)
      if (seq(s, 0, pos, k)) return true;
    return false;
  }

 private:
  const DecodedText& t_;
  size_t lo_, hi_;
  // Char node slot -> [from, to): every character in it satisfies the node's
  // test and the one at `to` does not (or to == hi).
  mutable std::vector<std::pair<size_t, size_t>> runs_;

  // How many characters from pos satisfy n, up to n.max.
  size_t run(const Node& n, size_t pos) const {
    std::pair<size_t, size_t>& r = runs_[n.slot];
    if (pos >= r.first && pos < r.second) return std::min<size_t>(r.second - pos, n.max);
    size_t count = 0;
    while (count < n.max && test(n.pred, pos + count)) count++;
    if (count > 0 && count < n.max) r = {pos, pos + count};  // ended by a failing character
    return count;
  }

  bool test(const Pred& p, size_t pos) const { return pos < hi_ && p.test(t_.cp[pos], t_.cat[pos], t_.ws[pos]); }

  bool seq(const Seq& s, size_t i, size_t pos, Cont k) const {
    if (i == s.size()) return k(pos);
    const Node& n = s[i];
    switch (n.kind) {
      case Kind::Char: {
        const size_t count = run(n, pos);
        if (count < n.min) return false;
        // Before $ only the longest run can succeed: giving characters back
        // would only move away from the end. (Keeps \s+$ linear on long
        // white space that does not end the text.)
        if (i + 1 < s.size() && s[i + 1].kind == Kind::End) return seq(s, i + 1, pos + count, k);
        for (size_t c = count + 1; c-- > n.min;)  // greedy: longest first
          if (seq(s, i + 1, pos + c, k)) return true;
        return false;
      }
      case Kind::Begin:
        return pos == lo_ && seq(s, i + 1, pos, k);
      case Kind::End:
        return pos == hi_ && seq(s, i + 1, pos, k);
      case Kind::Look:
      case Kind::NegLook: {
        const auto found = [](size_t) { return true; };
        if (alts(n.alts, pos, Cont(found)) != (n.kind == Kind::Look)) return false;
        return seq(s, i + 1, pos, k);
      }
      case Kind::Group: {
        const auto rest = [&](size_t p) { return seq(s, i + 1, p, k); };
        return repeat(n, 0, pos, Cont(rest));
      }
    }
    return false;
  }

  // The group n matched `count` times so far, ending at pos.
  bool repeat(const Node& n, uint32_t count, size_t pos, Cont after) const {
    if (count < n.max) {
      const auto again = [&](size_t p) {
        if (p == pos && count >= n.min) return false;  // an empty iteration cannot help
        return repeat(n, count + 1, p, after);
      };
      if (alts(n.alts, pos, Cont(again))) return true;
    }
    return count >= n.min && after(pos);
  }
};

}  // namespace

std::vector<size_t> SplitRegex::split(const DecodedText& t, const std::vector<size_t>& ends) const {
  std::vector<size_t> out;
  out.reserve(ends.size() * 2);
  size_t lo = 0;
  Matcher m(t, 0, 0, n_slots_);
  for (size_t hi : ends) {
    m.subject(lo, hi);
    size_t last = lo;  // end of the last piece produced
    for (size_t pos = lo; pos < hi;) {
      long n = -1;
      const auto accept = [&](size_t p) {
        n = (long)(p - pos);
        return true;
      };
      m.alts(*root_, pos, Cont(accept));
      if (n <= 0) {
        pos++;
        continue;
      }
      if (pos > last) out.push_back(pos);  // the unmatched text before the match
      pos += (size_t)n;
      out.push_back(last = pos);
    }
    if (hi > last) out.push_back(hi);
    lo = hi;
  }
  return out;
}

}  // namespace engine
