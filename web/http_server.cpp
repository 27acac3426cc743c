#include "web/http_server.h"

#include <sys/socket.h>

#include "core/error.h"

namespace engine::web {

void parse_listen_address(const std::string& s, std::string* host, int* port) {
  auto c = s.rfind(':');
  if (c == std::string::npos || c == 0) throw Error("bad listen address '" + s + "' (want HOST:PORT, e.g. 127.0.0.1:8080)");
  *host = s.substr(0, c);
  std::string p = s.substr(c + 1);
  size_t used = 0;
  long v = -1;
  try {
    v = std::stol(p, &used);
  } catch (...) {
  }
  if (p.empty() || used != p.size() || v < 0 || v > 65535)
    throw Error("bad port in listen address '" + s + "' (want 0..65535)");
  *port = (int)v;
}

HttpServer::HttpServer(HttpOptions opts) : opts_(std::move(opts)) {
  parse_listen_address(opts_.listen, &host_, &port_);
  server_.set_payload_max_length(opts_.max_body_bytes);
  server_.set_read_timeout(opts_.read_timeout_s, 0);
  server_.set_write_timeout(opts_.write_timeout_s, 0);
  server_.set_keep_alive_timeout(5);
  // httplib's default socket options include SO_REUSEPORT, with which a second
  // server binds a taken port without error and the two share its requests.
  server_.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  int threads = opts_.threads;
  server_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // Errors thrown by a handler become a JSON 500 instead of a dropped connection.
  server_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    std::string msg;
    for (char ch : what) {  // keep the hand-built JSON valid
      if (ch == '"' || ch == '\\') msg += '\\';
      if ((unsigned char)ch >= 0x20) msg += ch;
    }
    reply_json(res, 500, "{\"error\":{\"message\":\"" + msg + "\",\"type\":\"server_error\",\"code\":500}}");
  });
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  if (port_ == 0) {
    port_ = server_.bind_to_any_port(host_);
    if (port_ <= 0) throw Error("cannot listen for HTTP on " + opts_.listen);
  } else if (!server_.bind_to_port(host_, port_)) {
    throw Error("cannot listen for HTTP on " + opts_.listen + " (in use, or not a local address?)");
  }
  thread_ = std::thread([this] { server_.listen_after_bind(); });
}

std::string HttpServer::address() const { return host_ + ":" + std::to_string(port_); }

void HttpServer::stop() {
  server_.stop();
  if (thread_.joinable()) thread_.join();
}

void reply_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json; charset=utf-8");
}

}  // namespace engine::web
