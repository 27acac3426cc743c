// Network addresses: "host:port" for IPv4, "[v6]:port" for IPv6, and host
// names resolved once (blocking) when a command starts.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <string>
#include <vector>

namespace engine::net {

struct Address {
  sockaddr_storage ss{};

  // Parses numeric addresses, and resolves names such as "localhost" when
  // allow_lookup is set. Port 0 is accepted (listen on an ephemeral port).
  // Throws engine::Error with a message naming the bad input.
  static Address parse(const std::string& text, bool allow_lookup = true);
  static Address from_sockaddr(const sockaddr* sa);

  int family() const { return ss.ss_family; }
  int port() const;
  void set_port(int port);
  std::string host() const;       // "127.0.0.1", "::1"
  std::string to_string() const;  // "127.0.0.1:5000", "[::1]:5000"
  bool is_unspecified() const;    // 0.0.0.0 or ::
  bool is_loopback() const;
  const sockaddr* sa() const { return (const sockaddr*)&ss; }
};

// "a:1,b:2" -> {"a:1", "b:2"}; empty items are skipped.
std::vector<std::string> split_list(const std::string& s, char sep = ',');

}  // namespace engine::net
