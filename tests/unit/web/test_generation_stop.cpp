#include <gtest/gtest.h>

#include <cmath>

#include "web/generation_logprobs.h"
#include "web/generation_stop.h"
#include "web/sse.h"

using namespace engine::web;

// Feeds pieces one by one; returns what was shown, with "|" between pushes.
static std::string run(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string shown;
  for (const std::string& p : pieces) shown += m.push(p) + "|";
  return shown + m.flush();
}

TEST(StopMatcher, HoldsBackWhatCouldStillStop) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("hello E"), "hello ");  // "E" may start "END"
  EXPECT_EQ(m.push("N"), "");
  EXPECT_EQ(m.push("D and more"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("later"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, ReleasesFalseStarts) {
  StopMatcher m2({"END"});
  EXPECT_EQ(run(m2, {"a E", "N", "X", " b"}), "a ||ENX| b|");
  EXPECT_FALSE(m2.stopped());
  StopMatcher m3({"END"});
  EXPECT_EQ(run(m3, {"xE"}), "x|E");  // held text comes out at the end
}

TEST(StopMatcher, EarliestOfSeveralAndOverlaps) {
  StopMatcher m({"cd", "bcdx", "\n\n"});
  EXPECT_EQ(m.push("abcdx"), "a");  // "bcdx" starts first
  StopMatcher m2({"aab"});
  EXPECT_EQ(m2.push("aaaa"), "aa");  // "aa" may still start "aab"
  EXPECT_EQ(m2.push("b!"), "");  // "aaaab": the stop began at the third "a"
  EXPECT_TRUE(m2.stopped());
  StopMatcher none({"", ""});
  EXPECT_EQ(none.push("anything"), "anything");
  StopMatcher nl({"\n\n"});
  EXPECT_EQ(nl.push("line\n"), "line");
  EXPECT_EQ(nl.push("\nnext"), "");
  EXPECT_TRUE(nl.stopped());
}

TEST(Sse, Framing) {
  EXPECT_EQ(sse_data(R"({"a":1})"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_data("x\ny"), "data: x y\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  EXPECT_EQ(sse_keepalive()[0], ':');
}

TEST(Logprobs, LogSoftmaxAndTop) {
  std::vector<float> logits = {1, 3, 2, 3};
  TokenLogprob lp = token_logprob(logits.data(), 4, 2, 3);
  double z = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0));
  EXPECT_NEAR(lp.logprob, 2 - z, 1e-5);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[0].first, 1);  // ties: lower id first
  EXPECT_EQ(lp.top[1].first, 3);
  EXPECT_EQ(lp.top[2].first, 2);
  EXPECT_NEAR(lp.top[0].second, 3 - z, 1e-5);
  EXPECT_EQ(token_logprob(logits.data(), 4, 0, 10).top.size(), 4u);
  EXPECT_TRUE(token_logprob(logits.data(), 4, 0, 0).top.empty());
}
