#include "net/address.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace engine::net {

static bool parse_port(const std::string& s, int* port) {
  if (s.empty() || s.size() > 5) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  int p = std::atoi(s.c_str());
  if (p > 65535) return false;
  *port = p;
  return true;
}

Address Address::parse(const std::string& text, bool allow_lookup) {
  std::string host, port_s;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw Error("bad address '" + text + "': expected [IPv6]:PORT");
    host = text.substr(1, close - 1);
    port_s = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) throw Error("bad address '" + text + "': expected HOST:PORT");
    host = text.substr(0, colon);
    port_s = text.substr(colon + 1);
    if (host.find(':') != std::string::npos)
      throw Error("bad address '" + text + "': write IPv6 addresses as [ADDR]:PORT");
  }
  int port;
  if (!parse_port(port_s, &port)) throw Error("bad address '" + text + "': bad port '" + port_s + "'");
  if (host.empty()) throw Error("bad address '" + text + "': empty host");
  Address a;
  auto* v4 = (sockaddr_in*)&a.ss;
  auto* v6 = (sockaddr_in6*)&a.ss;
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
  } else {
    if (!allow_lookup) throw Error("bad address '" + text + "': not a numeric IP address");
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0 || !res) throw Error("cannot resolve '" + host + "': " + gai_strerror(rc));
    std::memcpy(&a.ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
  }
  a.set_port(port);
  return a;
}

Address Address::from_sockaddr(const sockaddr* sa) {
  Address a;
  if (sa->sa_family == AF_INET) std::memcpy(&a.ss, sa, sizeof(sockaddr_in));
  else if (sa->sa_family == AF_INET6) std::memcpy(&a.ss, sa, sizeof(sockaddr_in6));
  return a;
}

int Address::port() const {
  if (ss.ss_family == AF_INET) return ntohs(((const sockaddr_in*)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((const sockaddr_in6*)&ss)->sin6_port);
  return 0;
}

void Address::set_port(int port) {
  if (ss.ss_family == AF_INET) ((sockaddr_in*)&ss)->sin_port = htons((uint16_t)port);
  if (ss.ss_family == AF_INET6) ((sockaddr_in6*)&ss)->sin6_port = htons((uint16_t)port);
}

std::string Address::host() const {
  char buf[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) inet_ntop(AF_INET, &((const sockaddr_in*)&ss)->sin_addr, buf, sizeof buf);
  else if (ss.ss_family == AF_INET6) inet_ntop(AF_INET6, &((const sockaddr_in6*)&ss)->sin6_addr, buf, sizeof buf);
  return buf;
}

std::string Address::to_string() const {
  if (ss.ss_family == AF_INET6) {
    std::string s(1, '[');
    s += host();
    s += "]:";
    s += std::to_string(port());
    return s;
  }
  if (ss.ss_family == AF_INET) return host() + ":" + std::to_string(port());
  return "";
}

bool Address::is_unspecified() const {
  if (ss.ss_family == AF_INET) return ((const sockaddr_in*)&ss)->sin_addr.s_addr == htonl(INADDR_ANY);
  if (ss.ss_family == AF_INET6) return IN6_IS_ADDR_UNSPECIFIED(&((const sockaddr_in6*)&ss)->sin6_addr);
  return false;
}

bool Address::is_loopback() const {
  if (ss.ss_family == AF_INET) return (ntohl(((const sockaddr_in*)&ss)->sin_addr.s_addr) >> 24) == 127;
  if (ss.ss_family == AF_INET6) return IN6_IS_ADDR_LOOPBACK(&((const sockaddr_in6*)&ss)->sin6_addr);
  return false;
}

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(start, end - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

}  // namespace engine::net
