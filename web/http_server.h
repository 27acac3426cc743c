// An HTTP listener for the web face (OpenAI API, health page, metrics), on
// cpp-httplib: Debian packages it (libcpp-httplib-dev) and llama-server is
// built on it. It runs on its own threads, never on the libuv loop: handlers
// that need loop-owned state read a snapshot the loop publishes (see
// web/state_snapshot.h) or hand work over through a queue.
#pragma once
#include <httplib.h>

#include <memory>
#include <string>
#include <thread>

namespace engine::web {

struct HttpOptions {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 picks a free one
  size_t max_body_bytes = 1 << 20;        // larger request bodies get 413
  int threads = 16;                        // worker threads (also the most connections served at once)
  int read_timeout_s = 30;                 // a client that sends nothing this long is dropped (slow-loris)
  int write_timeout_s = 30;
};

class HttpServer {
 public:
  explicit HttpServer(HttpOptions opts);
  ~HttpServer();  // stops
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Register handlers here before start().
  httplib::Server& routes() { return server_; }
  // Binds (throws Error naming the address when it cannot) and serves on a thread.
  void start();
  // The bound address, e.g. "127.0.0.1:43123" (the real port when 0 was asked).
  std::string address() const;
  int port() const { return port_; }
  // Stops accepting and waits for the serving thread; idempotent.
  void stop();

 private:
  HttpOptions opts_;
  httplib::Server server_;
  std::thread thread_;
  std::string host_;
  int port_ = 0;
};

// "host:port" -> host and port; throws Error on anything else.
void parse_listen_address(const std::string& s, std::string* host, int* port);

// Sends `body` as JSON with `status`.
void reply_json(httplib::Response& res, int status, const std::string& body);

}  // namespace engine::web
