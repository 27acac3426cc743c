// NetThread: a loop thread owning an Rpc and a DhtNode; work posted from the
// test thread, blocking runs with timeouts, clean shutdown, bootstrap errors,
// and two threads finding each other's values through the DHT.
#include <gtest/gtest.h>

#include <atomic>

#include "core/error.h"
#include "train/net_thread.h"

using namespace engine;
using engine::train::NetThread;

namespace {

net::DhtOptions quick_dht() {
  net::DhtOptions o;
  o.rpc_timeout_ms = 500;
  return o;
}

std::string str_value(std::string_view s) {
  net::Buf b;
  net::Packer pk(b);
  net::pack_str(pk, s);
  return b.s;
}

}  // namespace

TEST(NetThread, StartPostRunShutdown) {
  NetThread t("127.0.0.1:0", {});
  EXPECT_FALSE(t.address().empty());
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; i++) t.post([&] { ran++; });
  // run() waits for done, which the loop calls after the posts before it ran.
  bool on_loop = false;
  EXPECT_TRUE(t.run(
      [&](std::function<void()> done) {
        on_loop = t.rpc().address() == t.address();
        done();
      },
      5000));
  EXPECT_EQ(ran.load(), 100);
  EXPECT_TRUE(on_loop);
  // done called later from a loop timer (asynchronously) also counts.
  EXPECT_TRUE(t.run(
      [&](std::function<void()> done) {
        t.rpc().call("127.0.0.1:1", "x", net::empty_map(), 100, [done](const net::Reply&) { done(); });
      },
      5000));
}

TEST(NetThread, RunTimesOutWhenDoneNeverComes) {
  std::function<void()> kept;  // done kept past the timeout, then called: ignored
  {
    NetThread t("127.0.0.1:0", {});
    EXPECT_FALSE(t.run([&](std::function<void()> done) { kept = done; }, 50));
    EXPECT_TRUE(t.run([&](std::function<void()> done) { kept(); done(); }, 5000));
    // A throwing task does not stop the loop.
    t.post([] { throw Error("boom"); });
    EXPECT_TRUE(t.run([](std::function<void()> done) { done(); }, 5000));
  }
  kept();  // the waiter it signals outlives the thread
}

TEST(NetThread, ClientModeDoesNotListen) {
  NetThread server("127.0.0.1:0", {}, {}, quick_dht());
  NetThread client("", {server.address()}, {}, quick_dht());
  EXPECT_TRUE(client.address().empty());
  size_t known = 0;
  EXPECT_TRUE(client.run(
      [&](std::function<void()> done) {
        known = client.dht().table().size();
        done();
      },
      5000));
  EXPECT_EQ(known, 1u);
}

TEST(NetThread, BootstrapFailureThrowsWithTheReason) {
  try {
    NetThread t("127.0.0.1:0", {"127.0.0.1:1"}, {}, quick_dht());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bootstrap"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(NetThread("not-an-address", {}), Error);
}

TEST(NetThread, TwoThreadsFindEachOtherThroughTheDht) {
  NetThread a("127.0.0.1:0", {}, {}, quick_dht());
  NetThread b("127.0.0.1:0", {a.address()}, {}, quick_dht());
  int stored = -1;
  ASSERT_TRUE(b.run(
      [&](std::function<void()> done) {
        b.dht().put("run.hello", std::nullopt, str_value("from b"), b.dht().now() + 60,
                    [&, done](int s, int, const net::LookupStats&) {
                      stored = s;
                      done();
                    });
      },
      5000));
  EXPECT_GE(stored, 1);
  std::string got;
  ASSERT_TRUE(a.run(
      [&](std::function<void()> done) {
        a.dht().get("run.hello", [&, done](const net::GetResult& r) {
          if (r.found) {
            auto oh = net::unpack_untrusted(r.record.plain.value.data(), r.record.plain.value.size());
            got = std::string(net::as_str(oh.get(), "value"));
          }
          done();
        });
      },
      5000));
  EXPECT_EQ(got, "from b");
  // And a knows b as a peer (b pinged it on bootstrap).
  bool knows = false;
  a.run(
      [&](std::function<void()> done) {
        knows = a.dht().table().size() == 1;
        done();
      },
      5000);
  EXPECT_TRUE(knows);
}
