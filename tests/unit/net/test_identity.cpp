#include "net/identity.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "core/error.h"

using namespace engine;
using namespace engine::net;

namespace {
std::string temp_path(const char* name) {
  return std::string(::testing::TempDir()) + "/" + name + "." + std::to_string(::getpid());
}
}  // namespace

TEST(Identity, SignaturesVerifyOnlyForTheirKeyAndMessage) {
  Identity a = Identity::generate(), b = Identity::generate();
  EXPECT_NE(a.id(), b.id());
  EXPECT_EQ(a.id(), peer_id_of(a.public_key()));
  const std::string sig = a.sign("hello");
  EXPECT_TRUE(verify_signature(a.public_key(), "hello", sig));
  EXPECT_FALSE(verify_signature(a.public_key(), "hellO", sig));
  EXPECT_FALSE(verify_signature(b.public_key(), "hello", sig));
  EXPECT_FALSE(verify_signature(a.public_key(), "hello", sig.substr(1)));
  std::string bad = sig;
  bad[10] ^= 1;
  EXPECT_FALSE(verify_signature(a.public_key(), "hello", bad));
}

TEST(Identity, KeyFileIsCreatedPrivateAndReadBack) {
  const std::string path = temp_path("identity");
  std::remove(path.c_str());
  Identity first = Identity::load_or_create(path);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Identity again = Identity::load_or_create(path);
  EXPECT_EQ(first.id(), again.id());
  EXPECT_TRUE(verify_signature(first.public_key(), "m", again.sign("m")));

  ::chmod(path.c_str(), 0644);
  EXPECT_THROW(Identity::load_or_create(path), Error);
  ::chmod(path.c_str(), 0600);
  { std::ofstream(path, std::ios::binary | std::ios::trunc) << "EID1short"; }
  EXPECT_THROW(Identity::load_or_create(path), Error);
  std::remove(path.c_str());
}
