// SplitRegex's parser: pattern text -> nodes (models/regex_nodes.h), then a
// folding pass that turns groups matching exactly one character into single
// character tests, so that quantifiers over them run as loops.
#include <algorithm>

#include "core/error.h"
#include "models/regex_nodes.h"
#include "models/regex_split.h"

namespace engine {

using namespace regex_detail;

namespace {

class Parser {
 public:
  explicit Parser(std::string_view pattern) : pat_(pattern) {
    for (size_t pos = 0; pos < pattern.size();) {
      const Utf8Char c = utf8_decode(pattern, pos);
      if (!c.valid) fail(pos, "invalid UTF-8");
      cp_.push_back(c.cp);
      off_.push_back(pos);
      pos += c.len;
    }
    off_.push_back(pattern.size());
  }

  Alts parse() {
    Alts a = alternatives();
    if (i_ < cp_.size()) fail("unbalanced ')'");
    return a;
  }

 private:
  std::string_view pat_;
  std::vector<uint32_t> cp_;
  std::vector<size_t> off_;
  size_t i_ = 0;

  [[noreturn]] void fail(size_t byte_off, const std::string& what) const {
    std::string msg = "pre-tokenizer regex '";
    msg += pat_;
    msg += "': ";
    msg += what;
    msg += " at byte ";
    msg += std::to_string(byte_off);
    throw Error(msg);
  }
  [[noreturn]] void fail(const std::string& what) const { fail(off_[std::min(i_, cp_.size())], what); }

  bool done() const { return i_ >= cp_.size(); }
  uint32_t peek(size_t k = 0) const { return i_ + k < cp_.size() ? cp_[i_ + k] : 0xFFFFFFFFu; }
  uint32_t next() {
    if (done()) fail("unexpected end of pattern");
    return cp_[i_++];
  }
  void expect(uint32_t c, const char* what) {
    if (peek() != c) fail(std::string("expected ") + what);
    i_++;
  }

  Alts alternatives() {
    Alts alts{sequence()};
    while (peek() == '|') {
      i_++;
      alts.push_back(sequence());
    }
    return alts;
  }

  Seq sequence() {
    Seq s;
    while (!done() && peek() != '|' && peek() != ')') {
      Node n = atom();
      quantifier(n);
      s.push_back(std::move(n));
    }
    return s;
  }

  static Node char_node(CharSet set) {
    Node n;
    n.kind = Kind::Char;
    n.pred.any = {{std::move(set)}};
    return n;
  }

  Node atom() {
    const uint32_t c = next();
    switch (c) {
      case '(': {
        Node n;
        n.kind = Kind::Group;
        if (peek() == '?') {
          i_++;
          const uint32_t k = next();
          if (k == '=') n.kind = Kind::Look;
          else if (k == '!') n.kind = Kind::NegLook;
          else if (k != ':') fail(std::string("unsupported group '(?") + (char)k + "'");
        }
        n.alts = alternatives();
        expect(')', "')'");
        return n;
      }
      case '[':
        return char_node(bracket());
      case '\\': {
        CharSet set;
        escape(set, false);
        return char_node(std::move(set));
      }
      case '^':
      case '$': {
        Node n;
        n.kind = c == '^' ? Kind::Begin : Kind::End;
        return n;
      }
      case '.':
        i_--;
        fail("'.' is not supported");
      case '*':
      case '+':
      case '?':
      case '{':
        i_--;
        fail("nothing to repeat");
      default: {
        CharSet set;
        set.ranges.push_back({c, c});
        return char_node(std::move(set));
      }
    }
  }

  uint32_t number() {
    if (peek() < '0' || peek() > '9') fail("expected a number");
    uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + (next() - '0');
      if (v > 100000) fail("repeat count too large");
    }
    return (uint32_t)v;
  }

  void quantifier(Node& n) {
    uint32_t lo, hi;
    switch (peek()) {
      case '*': lo = 0, hi = kUnbounded, i_++; break;
      case '+': lo = 1, hi = kUnbounded, i_++; break;
      case '?': lo = 0, hi = 1, i_++; break;
      case '{':
        i_++;
        lo = hi = number();
        if (peek() == ',') {
          i_++;
          hi = peek() == '}' ? kUnbounded : number();
        }
        expect('}', "'}'");
        if (hi < lo) fail("repeat range {n,m} with m < n");
        break;
      default:
        return;
    }
    if (n.kind != Kind::Char && n.kind != Kind::Group) fail("quantifier after an assertion");
    if (peek() == '?' || peek() == '+') fail("lazy and possessive quantifiers are not supported");
    n.min = lo;
    n.max = hi;
  }

  // After a backslash: adds what the escape stands for to `set` (a plain escape
  // outside a class makes a set of its own).
  void escape(CharSet& set, bool in_class) {
    const uint32_t c = next();
    const auto add_cp = [&](uint32_t x) { set.ranges.push_back({x, x}); };
    switch (c) {
      case 's': set.space = true; return;
      case 'd': set.ranges.push_back({'0', '9'}); return;
      case 'S':
      case 'D': {
        CharSet inner;
        if (c == 'S') inner.space = true;
        else inner.ranges.push_back({'0', '9'});
        if (in_class) {
          set.negs.push_back(std::move(inner));
        } else {
          inner.negated = true;
          set = std::move(inner);
        }
        return;
      }
      case 'p':
      case 'P': {
        expect('{', "'{' after \\p");
        std::string name;
        while (!done() && peek() != '}') name += (char)next();
        expect('}', "'}' after \\p{..");
        CharSet inner;
        inner.cats = category_bits(name);
        if (c == 'p') {
          set.cats |= inner.cats;
        } else if (in_class) {
          set.negs.push_back(std::move(inner));
        } else {
          inner.negated = true;
          set = std::move(inner);
        }
        return;
      }
      case 'r': add_cp('\r'); return;
      case 'n': add_cp('\n'); return;
      case 't': add_cp('\t'); return;
      case 'f': add_cp('\f'); return;
      case 'v': add_cp('\v'); return;
      default:
        // An escaped punctuation or symbol character stands for itself.
        if (c < 128 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
          add_cp(c);
          return;
        }
        i_--;
        fail(std::string("unsupported escape '\\") + (char)c + "'");
    }
  }

  uint16_t category_bits(const std::string& name) {
    if (name == "L") return cat_bit(UCat::Letter);
    if (name == "N") return cat_bit(UCat::Number);
    if (name == "P") return cat_bit(UCat::Punctuation);
    if (name == "S") return cat_bit(UCat::Symbol);
    if (name == "M") return cat_bit(UCat::Mark);
    if (name == "Z") return cat_bit(UCat::Separator);
    if (name == "C") return cat_bit(UCat::Other) | cat_bit(UCat::Unassigned);
    std::string what = "unsupported Unicode class \\p{";
    what += name;
    what += "} (supported: L N P S M Z C)";
    fail(what);
  }

  // After '[': the class up to its closing ']'.
  CharSet bracket() {
    CharSet set;
    if (peek() == '^') {
      set.negated = true;
      i_++;
    }
    bool first = true;
    for (;;) {
      if (done()) fail("unterminated '['");
      uint32_t c = next();
      if (c == ']' && !first) break;
      first = false;
      if (c == '\\') {
        // Only a single-character escape can start a range.
        CharSet one;
        escape(one, true);
        const bool single = one.ranges.size() == 1 && one.ranges[0].first == one.ranges[0].second &&
                            !one.space && one.cats == 0 && one.negs.empty();
        if (!(single && peek() == '-' && peek(1) != ']')) {
          set.ranges.insert(set.ranges.end(), one.ranges.begin(), one.ranges.end());
          set.cats |= one.cats;
          set.space = set.space || one.space;
          for (CharSet& n : one.negs) set.negs.push_back(std::move(n));
          continue;
        }
        c = one.ranges[0].first;
      }
      uint32_t hi = c;
      if (peek() == '-' && peek(1) != ']' && i_ + 1 < cp_.size()) {
        i_++;
        hi = next();
        if (hi == '\\') {
          CharSet one;
          escape(one, true);
          if (one.ranges.size() != 1 || one.ranges[0].first != one.ranges[0].second)
            fail("a class escape cannot end a range");
          hi = one.ranges[0].first;
        }
        if (hi < c) fail("range out of order");
      }
      set.ranges.push_back({c, hi});
    }
    return set;
  }
};

// Sorts and merges a set's ranges (the matcher binary-searches them).
void finish(CharSet& s) {
  std::sort(s.ranges.begin(), s.ranges.end());
  std::vector<std::pair<uint32_t, uint32_t>> merged;
  for (const auto& r : s.ranges) {
    if (!merged.empty() && r.first <= merged.back().second + 1)
      merged.back().second = std::max(merged.back().second, r.second);
    else
      merged.push_back(r);
  }
  s.ranges.swap(merged);
  for (CharSet& n : s.negs) finish(n);
}

Pred pred_and(const Pred& a, const Pred& b) {
  Pred out;
  for (const auto& x : a.any)
    for (const auto& y : b.any) {
      std::vector<CharSet> all = x;
      all.insert(all.end(), y.begin(), y.end());
      out.any.push_back(std::move(all));
    }
  return out;
}

bool single_char(const Alts& alts, Pred* out);

// A sequence that always consumes exactly one character: positive lookaheads
// of one character each, then one single character test. Its predicate is
// their conjunction (the lookaheads look at the very character consumed).
bool single_char(const Seq& s, Pred* out) {
  Pred acc;
  acc.any = {{}};
  bool consumed = false;
  for (const Node& n : s) {
    Pred p;
    if (consumed) return false;
    if (n.kind == Kind::Look && single_char(n.alts, &p)) {
      acc = pred_and(acc, p);
    } else if (n.kind == Kind::Char && n.min == 1 && n.max == 1) {
      acc = pred_and(acc, n.pred);
      consumed = true;
    } else {
      return false;
    }
  }
  if (!consumed) return false;
  *out = std::move(acc);
  return true;
}

bool single_char(const Alts& alts, Pred* out) {
  Pred acc;
  for (const Seq& s : alts) {
    Pred p;
    if (!single_char(s, &p)) return false;
    acc.any.insert(acc.any.end(), p.any.begin(), p.any.end());
  }
  *out = std::move(acc);
  return !alts.empty();
}

void fold(Alts& alts);

void fold(Seq& s) {
  Seq out;
  for (Node& n : s) {
    if (n.kind == Kind::Char) {
      for (auto& all : n.pred.any)
        for (CharSet& c : all) finish(c);
      out.push_back(std::move(n));
      continue;
    }
    if (n.kind == Kind::Begin || n.kind == Kind::End) {
      out.push_back(std::move(n));
      continue;
    }
    fold(n.alts);
    Pred p;
    if (n.kind == Kind::Group && single_char(n.alts, &p)) {
      Node c;
      c.kind = Kind::Char;
      c.pred = std::move(p);
      c.min = n.min;
      c.max = n.max;
      out.push_back(std::move(c));
    } else if (n.kind == Kind::Group && n.min == 1 && n.max == 1 && n.alts.size() == 1) {
      for (Node& inner : n.alts[0]) out.push_back(std::move(inner));  // (abc) is just abc
    } else {
      out.push_back(std::move(n));
    }
  }
  s.swap(out);
}

void fold(Alts& alts) {
  for (Seq& s : alts) fold(s);
}

// Numbers the Char nodes (their run-cache slots); returns the count.
uint32_t number_slots(Alts& alts, uint32_t next) {
  for (Seq& s : alts)
    for (Node& n : s) {
      if (n.kind == Kind::Char) n.slot = next++;
      else next = number_slots(n.alts, next);
    }
  return next;
}

}  // namespace

SplitRegex::SplitRegex(std::string_view pattern) : pattern_(pattern) {
  Alts alts = Parser(pattern).parse();
  fold(alts);
  n_slots_ = number_slots(alts, 0);
  root_ = std::make_unique<Alts>(std::move(alts));
}

SplitRegex::~SplitRegex() = default;
SplitRegex::SplitRegex(SplitRegex&&) noexcept = default;
SplitRegex& SplitRegex::operator=(SplitRegex&&) noexcept = default;

}  // namespace engine
