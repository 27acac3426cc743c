// The optional "loss" field of progress records (shown on the health page):
// present only when finite, absent in older records, strictly checked.
#include <gtest/gtest.h>

#include <cmath>

#include "net/msg.h"
#include "train/progress_tracker.h"

using namespace engine;
using namespace engine::train;

TEST(ProgressLoss, OptionalAndBackwardCompatible) {
  PeerProgress p;
  p.epoch = 3;
  p.samples = 7;
  p.loss = 2.5;
  std::string with = encode_progress(p);
  auto oh = net::unpack_untrusted(with.data(), with.size());
  EXPECT_EQ(oh.get().via.map.size, 9u);
  EXPECT_DOUBLE_EQ(decode_progress(oh.get()).loss, 2.5);

  p.loss = std::nan("");  // not known: not sent, so older peers see the record they expect
  std::string without = encode_progress(p);
  auto oh2 = net::unpack_untrusted(without.data(), without.size());
  EXPECT_EQ(oh2.get().via.map.size, 8u);
  PeerProgress q = decode_progress(oh2.get());
  EXPECT_TRUE(std::isnan(q.loss));
  EXPECT_EQ(q.epoch, 3);
}

TEST(ProgressLoss, RejectsNegativeLoss) {
  PeerProgress p;
  p.loss = -1;
  std::string s = encode_progress(p);
  auto oh = net::unpack_untrusted(s.data(), s.size());
  EXPECT_THROW(decode_progress(oh.get()), net::BadMessage);
}
