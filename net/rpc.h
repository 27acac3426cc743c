// Request/response over framed connections: a handshake, calls with
// deadlines, error replies, one-way messages and streams, and the limits a
// hostile peer cannot exceed. Single-threaded: everything runs on one libuv
// loop, and every callback is invoked from that loop.
//
// Usage:
//   Rpc rpc(loop, opts);
//   rpc.listen("127.0.0.1:0");
//   rpc.handle("echo", [](Request& r) { r.respond(pack_object(r.args)); });
//   rpc.call("127.0.0.1:5000", "echo", args, 5000, [](const Reply& rep) {...});
#pragma once
#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "net/envelope.h"
#include "net/identity.h"
#include "net/msg.h"
#include "net/node_id.h"
#include "net/swarm_key.h"
#include "net/peer_backoff.h"
#include "net/transport.h"

namespace engine::net {

// What one peer may cost us. Exceeding any of them closes that peer's
// connection (with a goodbye saying why) and nothing else.
struct Limits {
  size_t max_frame = kDefaultMaxFrame;    // body bytes of one frame
  size_t max_inflight = 128;              // requests of one connection awaiting our reply
  int max_conns_per_ip = 128;             // incoming connections from one IP address
  int max_conns = 2048;                   // all connections
  uint32_t idle_timeout_ms = 120000;      // no frames and nothing pending: close
  uint32_t handshake_timeout_ms = 5000;   // no hello by then: close
  int64_t max_clock_skew_ms = 5000;       // peers whose clock differs more are refused
  size_t soft_write_queue = 8u << 20;     // above: stop reading the peer's requests
  size_t hard_write_queue = 64u << 20;    // above: calls fail "overloaded"; a peer that does not read its replies is closed
  double max_requests_per_s = 2000;       // per connection (requests + one-way + parts); 0 = no limit
  double request_burst = 4000;
  uint32_t max_deadline_ms = 600000;      // longer request deadlines are clamped
  uint32_t frame_timeout_ms = 60000;      // a frame begun must be complete by then (slow-loris): close
  // Bytes announced by the headers of incoming frames whose bodies have not
  // all arrived (what we buffer for peers): per source IP (over: close, backoff)
  // and over all incoming connections (over: close that connection, no backoff).
  size_t max_pending_per_ip = 128u << 20;
  size_t max_pending_total = 512u << 20;
  // Peers cut off for a violation are refused at accept (by IP) and at hello
  // (by id) for backoff_base_ms, doubling per repeat up to backoff_max_ms; one
  // doubling is forgiven per backoff_decay_ms of quiet. 0 = no backoff.
  uint64_t backoff_base_ms = 1000;
  uint64_t backoff_max_ms = 300000;
  uint64_t backoff_decay_ms = 60000;
};

struct RpcOptions {
  // The key pair this node signs with (DHT records, handshakes); null = a fresh
  // one for this process (see --identity for a stable one).
  // The node's id is always the identity's peer id (net/identity.h).
  std::shared_ptr<const Identity> identity;
  std::string swarm = "default";
  // Private swarm (--swarm-key): every connection proves this key before
  // anything else and is encrypted; null = an open swarm.
  std::shared_ptr<const SwarmKey> swarm_key;
  Limits limits;
  int64_t clock_offset_ms = 0;  // tests: pretend our wall clock is off by this much
  // The address our hello tells peers to dial (a proxy or a NAT's public address);
  // "" = the bound listen address.
  std::string announce;
};

struct PeerInfo {
  NodeId id;
  std::string listen;  // where the peer accepts connections; "" for clients
  std::string remote;  // the socket's remote address
};

struct Reply {
  ErrorCode code = ErrorCode::kOk;
  std::string message;
  const msgpack::object* result = nullptr;  // valid only during the callback
  PeerInfo peer;                            // id known once the handshake arrived
  bool ok() const { return code == ErrorCode::kOk; }
};
using ReplyFn = std::function<void(const Reply&)>;
using PartFn = std::function<void(const msgpack::object& data, bool end)>;

class Rpc;

// Handle for answering one request, possibly later; cheap to copy. Every
// method is a no-op returning false once the request is answered, cancelled,
// expired, or its connection is gone.
class Responder {
 public:
  Responder() = default;
  bool respond(std::string result_msgpack);
  bool fail(ErrorCode code, std::string_view message);
  bool send_part(std::string data_msgpack, bool end = false);
  // A part whose msgpack encoding is head + tail, the tail sent from caller
  // memory without a copy (see tensor_head); `keep` owns that memory.
  bool send_part_ref(std::string head, std::string_view tail, std::shared_ptr<const void> keep, bool end = false);
  bool alive() const;
  size_t queued() const;  // bytes waiting to go out on this connection
  // Runs fn once the connection's write queue has drained below the soft limit.
  void when_writable(std::function<void()> fn);
  uint64_t id() const { return id_; }

 private:
  friend class Rpc;
  Responder(Rpc* rpc, uint64_t conn, uint64_t id) : rpc_(rpc), conn_(conn), id_(id) {}
  Rpc* rpc_ = nullptr;
  uint64_t conn_ = 0, id_ = 0;
};

struct Request {
  std::string_view method;
  const msgpack::object& args;  // valid only during the handler; copy what you keep
  PeerInfo peer;
  uint64_t deadline_ms;         // loop time (uv_now) after which the caller gave up
  Responder responder;
  // Parts the caller streams on this request (set it in the handler to accept them).
  PartFn on_part;

  void respond(std::string result_msgpack) { responder.respond(std::move(result_msgpack)); }
  void fail(ErrorCode code, std::string_view message) { responder.fail(code, message); }
};
using Handler = std::function<void(Request&)>;
using NotifyFn = std::function<void(const msgpack::object& args, const PeerInfo& from)>;

// msgpack encoding of an empty map, the body of argument-less calls.
std::string empty_map();

class Rpc : private ConnectionOwner {
 public:
  Rpc(uv_loop_t* loop, RpcOptions opts = {});
  ~Rpc() override;
  Rpc(const Rpc&) = delete;
  Rpc& operator=(const Rpc&) = delete;

  // Binds the single listener; returns the bound address ("127.0.0.1:41234").
  std::string listen(const std::string& addr);
  const std::string& address() const { return address_; }  // "" when not listening
  const NodeId& id() const { return opts_.identity->id(); }
  const Identity& identity() const { return *opts_.identity; }
  const RpcOptions& options() const { return opts_; }
  uv_loop_t* loop() const { return loop_; }
  uint64_t now_ms() const { return uv_now(loop_); }
  int64_t wall_ms() const;  // Unix epoch ms, plus the test clock offset

  void handle(const std::string& method, Handler h) { handlers_[method] = std::move(h); }
  void on_notify(const std::string& method, NotifyFn fn) { notify_handlers_[method] = std::move(fn); }

  // Calls `method` on the peer listening at addr, reusing a connection to it.
  // `done` runs exactly once, from the loop (never inside call()). Returns the
  // call id (for send_part / cancel).
  uint64_t call(const std::string& addr, std::string_view method, std::string args_msgpack, uint32_t timeout_ms,
                ReplyFn done, PartFn on_part = {});
  // Streams a part to the handler of an open call; false if the call is over
  // or the send buffer is full.
  bool send_part(uint64_t call_id, std::string data_msgpack, bool end = false);
  // Fails the call with kCancelled and tells the peer.
  void cancel(uint64_t call_id);
  bool notify(const std::string& addr, std::string_view method, std::string args_msgpack);
  // Bytes queued to the connection carrying this call.
  size_t call_queued(uint64_t call_id) const;

  // Observers (logging, routing tables).
  std::function<void(const PeerInfo&)> on_peer_hello;
  std::function<void(const PeerInfo&, const std::string& why)> on_peer_closed;
  // A peer was cut off for breaking the protocol or a limit.
  std::function<void(const std::string& remote, const std::string& why)> on_violation;

  // Stops listening, fails outstanding calls (kUnavailable), closes every
  // connection. Run the loop afterwards to let libuv release the handles.
  void close();
  bool closed() const { return closed_; }

  struct Stats {
    uint64_t calls = 0, replies_ok = 0, replies_err = 0;
    uint64_t requests_in = 0, notifies_in = 0, parts_in = 0;
    uint64_t violations = 0, conns_accepted = 0, conns_refused = 0, conns_opened = 0;
    uint64_t backed_off = 0;  // connections and hellos refused because their IP or id is backed off
  };
  const Stats& stats() const { return stats_; }
  // Bytes read from / written to the network by every connection, open or closed.
  uint64_t bytes_in() const;
  uint64_t bytes_out() const;
  size_t connection_count() const { return conns_.size(); }
  size_t pending_bytes() const { return pending_total_; }  // reserved for unfinished incoming frames
  // Whether a connection that completed the handshake with this peer id is open.
  bool peer_connected(const NodeId& id) const;
  // Milliseconds for which connections from this IP ("127.0.0.2") are still refused.
  uint64_t backed_off_ms(const std::string& ip) const { return backoff_.refused_for("ip:" + ip, now_ms()); }
  size_t queued_bytes() const;  // written by us, not yet taken by the kernel, all connections

 private:
  friend class Responder;
  struct InFlight {
    uint64_t deadline_ms;
    PartFn on_part;
  };
  struct Conn {
    Connection* c = nullptr;
    PeerInfo peer;
    bool hello_in = false;    // the peer's hello checked; its auth (identity proof) comes next
    bool hello_done = false;  // the handshake is complete: the peer proved its identity
    std::string nonce;        // ours, in the hello we sent
    std::string peer_key, peer_nonce;
    ErrorCode bye_code = ErrorCode::kUnavailable;  // what failed calls report
    std::string dial_key;  // address this outgoing connection was made for
    std::string addr_key;  // key in by_addr_ ("" if not registered)
    double tokens = 0;
    uint64_t tokens_ms = 0;
    size_t pending = 0;  // bytes reserved for the unfinished incoming frame (Limits::max_pending_*)
    std::unordered_map<uint64_t, InFlight> inflight;  // requests from the peer
    size_t calls = 0;                                  // our calls on it
    std::vector<std::function<void()>> drain_waiters;
  };
  struct Call {
    uint64_t conn;
    uint64_t deadline_ms;
    std::multimap<uint64_t, uint64_t>::iterator timer_it;
    ReplyFn done;
    PartFn on_part;
    ErrorCode pre_error = ErrorCode::kOk;  // failed before sending; reported from the timer
    std::string pre_message;
  };

  // ConnectionOwner
  void on_connected(Connection& c) override;
  void on_frame(Connection& c, std::string_view body) override;
  void on_bad_frame(Connection& c, const std::string& why) override;
  void on_closed(Connection& c, const std::string& why) override;
  void on_drain(Connection& c) override;
  void on_freed(uint64_t conn_id) override;
  bool on_frame_begun(Connection& c, size_t body) override;
  void release_pending(Conn& st);

  static void on_new_connection(uv_stream_t* server, int status);
  static void on_deadline_timer(uv_timer_t* t);
  static void on_sweep_timer(uv_timer_t* t);

  Conn* conn_for(const std::string& addr, std::string* err);
  Conn* find_conn(uint64_t id);
  void adopt(Connection* c);
  void handle_hello(Conn& st, const Hello& h);
  void handle_auth(Conn& st, std::string_view sig);
  std::string transcript(const Conn& st, bool signer_dialed) const;
  void handle_request(Conn& st, const Envelope& e);
  void finish_call(uint64_t call_id, const Reply& r);
  // Cuts the peer off; `punish` also backs off its IP and id (not for honest
  // mismatches such as another swarm's name).
  void violation(Conn& st, ErrorCode code, const std::string& why, bool punish = true);
  void refuse(Connection* c, const std::string& why);
  bool take_token(Conn& st);
  bool send_reply(uint64_t conn, uint64_t id, std::string prefix, std::string payload, bool final,
                  std::string_view tail = {}, std::shared_ptr<const void> keep = nullptr);
  void arm_deadline_timer();
  void sweep();

  uv_loop_t* loop_;
  RpcOptions opts_;
  std::string address_;
  uv_tcp_t* listener_ = nullptr;
  uv_timer_t* deadline_timer_ = nullptr;
  uv_timer_t* sweep_timer_ = nullptr;
  uint64_t armed_for_ = UINT64_MAX;
  bool closed_ = false;
  uint64_t next_call_id_ = 1;
  std::unordered_map<std::string, Handler> handlers_;
  std::unordered_map<std::string, NotifyFn> notify_handlers_;
  std::unordered_map<uint64_t, Conn> conns_;               // by connection id (open ones)
  uint64_t closed_bytes_in_ = 0, closed_bytes_out_ = 0;    // of connections already closed
  struct Flushing {
    Connection* c;
    uint64_t since_ms;
  };
  std::unordered_map<uint64_t, Flushing> flushing_;       // closed, writing a goodbye
  std::unordered_map<std::string, uint64_t> by_addr_;      // peer address -> connection id
  std::unordered_map<std::string, int> per_ip_;            // incoming connections per IP
  PeerBackoff backoff_;                                    // "ip:<host>" and "id:<hex>" keys
  std::unordered_map<std::string, size_t> pending_per_ip_; // Conn::pending summed per IP
  size_t pending_total_ = 0;
  std::unordered_map<uint64_t, Call> calls_;
  std::multimap<uint64_t, uint64_t> deadlines_;            // deadline -> call id
  Stats stats_;
};

}  // namespace engine::net
