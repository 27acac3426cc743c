#include "net/rpc.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <sodium.h>

#include "core/error.h"
#include "net/handshake.h"

namespace engine::net {

std::string empty_map() { return std::string(1, '\x80'); }

// Owner of connections whose Rpc has been closed: ignores everything.
namespace {
struct OrphanOwner final : ConnectionOwner {
  void on_connected(Connection&) override {}
  void on_frame(Connection&, std::string_view) override {}
  void on_bad_frame(Connection&, const std::string&) override {}
  void on_closed(Connection&, const std::string&) override {}
  void on_drain(Connection&) override {}
  void on_freed(uint64_t) override {}
};
OrphanOwner g_orphans;

template <class H>
void close_and_delete(H* h) {
  uv_close((uv_handle_t*)h, [](uv_handle_t* x) { delete (H*)x; });
}
}  // namespace

constexpr uint64_t kFlushGraceMs = 2000;  // a goodbye gets this long to be written

// Backoff key of a peer's address; "" for the machine's own loopback address,
// which is never backed off: every local process (and every peer behind a local
// reverse proxy) shares it, so one offender would lock them all out. Their ids
// are still backed off.
static std::string ip_key(const std::string& host) {
  return host == "127.0.0.1" || host == "::1" ? std::string() : "ip:" + host;
}

Rpc::Rpc(uv_loop_t* loop, RpcOptions opts) : loop_(loop), opts_(std::move(opts)) {
  if (!opts_.identity) opts_.identity = std::make_shared<const Identity>(Identity::generate());
  const Limits& L = opts_.limits;
  backoff_.set_options({L.backoff_base_ms, L.backoff_max_ms, L.backoff_decay_ms, 65536});
  // A peer that vanishes mid-write must cost an EPIPE error, not the process.
  signal(SIGPIPE, SIG_IGN);
  deadline_timer_ = new uv_timer_t;
  uv_timer_init(loop_, deadline_timer_);
  deadline_timer_->data = this;
  sweep_timer_ = new uv_timer_t;
  uv_timer_init(loop_, sweep_timer_);
  sweep_timer_->data = this;
  uv_timer_start(sweep_timer_, on_sweep_timer, 500, 500);
}

Rpc::~Rpc() { close(); }

int64_t Rpc::wall_ms() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count() + opts_.clock_offset_ms;
}

// ---- listening ---------------------------------------------------------------

std::string Rpc::listen(const std::string& addr) {
  if (listener_) throw Error("already listening on " + address_);
  Address a = Address::parse(addr);
  listener_ = new uv_tcp_t;
  uv_tcp_init(loop_, listener_);
  listener_->data = this;
  int rc = uv_tcp_bind(listener_, a.sa(), 0);
  if (rc == 0) rc = uv_listen((uv_stream_t*)listener_, 511, on_new_connection);
  if (rc != 0) {
    close_and_delete(listener_);
    listener_ = nullptr;
    throw Error("cannot listen on " + addr + ": " + uv_strerror(rc));
  }
  sockaddr_storage ss;
  int len = sizeof ss;
  uv_tcp_getsockname(listener_, (sockaddr*)&ss, &len);
  address_ = Address::from_sockaddr((sockaddr*)&ss).to_string();
  return address_;
}

void Rpc::on_new_connection(uv_stream_t* server, int status) {
  auto* self = (Rpc*)server->data;
  if (status < 0 || self->closed_) return;
  std::string err;
  Connection* c = Connection::accept(server, self, self->opts_.limits.max_frame, &err, self->opts_.swarm_key.get());
  if (!c) return;
  self->stats_.conns_accepted++;
  std::string ip = c->remote().host();
  const Limits& L = self->opts_.limits;
  if (uint64_t ms = self->backoff_.refused_for("ip:" + ip, self->now_ms())) {
    // Not an offence of its own: retrying does not lengthen the refusal.
    self->stats_.backed_off++;
    self->refuse(c, "backed off for " + std::to_string(ms) + " ms after a violation");
    return;
  }
  bool ip_full = self->per_ip_[ip] >= L.max_conns_per_ip;
  if ((int)self->conns_.size() >= L.max_conns || ip_full) {
    if (self->on_violation) self->on_violation(c->remote().to_string(), "too many connections");
    std::string key = ip_key(ip);
    if (ip_full && !key.empty()) self->backoff_.punish(key, self->now_ms());  // the global cap is no one address's fault
    self->refuse(c, "too many connections from your address");
    return;
  }
  self->per_ip_[ip]++;
  self->adopt(c);
}

// Tells the peer why (it can log it), then drops the connection.
void Rpc::refuse(Connection* c, const std::string& why) {
  stats_.conns_refused++;
  c->send_control(encode_bye(ErrorCode::kRejected, why));  // before the handshake: a control frame
  flushing_[c->id()] = {c, now_ms()};
  c->close(why, true);
}

bool Rpc::peer_connected(const NodeId& id) const {
  for (auto& [cid, st] : conns_)
    if (st.hello_done && st.peer.id == id) return true;
  return false;
}

void Rpc::adopt(Connection* c) {
  Conn& st = conns_[c->id()];
  st.c = c;
  st.peer.remote = c->remote().to_string();
  st.tokens = opts_.limits.request_burst;
  st.tokens_ms = now_ms();
  // Our own calls wait until the peer has proved who it is (handle_hello).
  c->close_gate();
  st.nonce.resize(kNonceBytes);
  randombytes_buf(st.nonce.data(), st.nonce.size());
  Hello h;
  h.peer_id = std::string(id().bytes());
  h.key = std::string((const char*)identity().public_key().data(), kPublicKeyBytes);
  h.nonce = st.nonce;
  h.version = kProtocolVersion;
  h.swarm = opts_.swarm;
  h.listen = opts_.announce.empty() || address_.empty() ? address_ : opts_.announce;
  h.time_ms = wall_ms();
  c->send_control(encode_hello(h));  // held until the connect (and swarm-key handshake) completes
}

// ---- ConnectionOwner ----------------------------------------------------------

void Rpc::on_connected(Connection&) { stats_.conns_opened++; }

Rpc::Conn* Rpc::find_conn(uint64_t id) {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : &it->second;
}

void Rpc::violation(Conn& st, ErrorCode code, const std::string& why, bool punish) {
  stats_.violations++;
  st.bye_code = code;    // our own calls on it fail with the same reason
  Connection* c = st.c;  // st dies inside close()
  if (punish && !c->outgoing()) {
    // Only peers that dialled us are refused later; our own dials are the DHT's business.
    std::string key = ip_key(c->remote().host());
    if (!key.empty()) backoff_.punish(key, now_ms());
    if (st.hello_done) backoff_.punish("id:" + st.peer.id.hex(), now_ms());
  }
  if (on_violation) on_violation(c->remote().to_string(), why);
  c->send_control(encode_bye(code, why));
  flushing_[c->id()] = {c, now_ms()};
  c->close(why, true);
}

bool Rpc::take_token(Conn& st) {
  const Limits& L = opts_.limits;
  if (L.max_requests_per_s <= 0) return true;
  uint64_t now = now_ms();
  st.tokens = std::min(L.request_burst, st.tokens + (double)(now - st.tokens_ms) * L.max_requests_per_s / 1000.0);
  st.tokens_ms = now;
  if (st.tokens < 1) return false;
  st.tokens -= 1;
  return true;
}

bool Rpc::on_frame_begun(Connection& c, size_t body) {
  Conn* st = find_conn(c.id());
  if (!st || c.outgoing()) return true;  // replies to our own calls are bounded by what we ask for
  const Limits& L = opts_.limits;
  std::string ip = c.remote().host();
  size_t mine = pending_per_ip_.count(ip) ? pending_per_ip_[ip] : 0;
  if (mine + body > L.max_pending_per_ip) {
    violation(*st, ErrorCode::kRejected,
              "more than " + std::to_string(L.max_pending_per_ip) + " bytes of unfinished frames from your address");
    return false;
  }
  if (pending_total_ + body > L.max_pending_total) {
    // Everyone's fault and no one's: shed this one without backing it off.
    violation(*st, ErrorCode::kOverloaded, "server busy: too many unfinished frames; retry later", false);
    return false;
  }
  st->pending = body;
  pending_per_ip_[ip] = mine + body;
  pending_total_ += body;
  return true;
}

void Rpc::release_pending(Conn& st) {
  if (!st.pending) return;
  pending_total_ -= st.pending;
  auto it = pending_per_ip_.find(st.c->remote().host());
  if (it != pending_per_ip_.end() && (it->second -= st.pending) == 0) pending_per_ip_.erase(it);
  st.pending = 0;
}

void Rpc::on_frame(Connection& c, std::string_view body) {
  Conn* st = find_conn(c.id());
  if (!st) return;
  release_pending(*st);  // the frame is whole: it is handled now, not buffered
  msgpack::object_handle oh;
  Envelope e;
  try {
    oh = unpack_untrusted(body.data(), body.size());
    e = decode_envelope(oh.get());
  } catch (const BadMessage& err) {
    violation(*st, ErrorCode::kProtocol, std::string("bad message: ") + err.what());
    return;
  }
  if (!st->hello_done) {
    MsgType want = st->hello_in ? MsgType::kAuth : MsgType::kHello;
    if (e.type != want) {
      violation(*st, ErrorCode::kProtocol,
                std::string("expected ") + msg_type_name(want) + ", got " + msg_type_name(e.type));
      return;
    }
    if (want == MsgType::kHello) handle_hello(*st, e.hello);
    else handle_auth(*st, e.sig);
    return;
  }
  switch (e.type) {
    case MsgType::kHello:
    case MsgType::kAuth:
      violation(*st, ErrorCode::kProtocol, std::string("second ") + msg_type_name(e.type));
      return;
    case MsgType::kBye: {
      std::string why = "peer said goodbye (" + std::string(error_code_name(e.code)) + "): " + std::string(e.message);
      st->bye_code = e.code == ErrorCode::kOk ? ErrorCode::kUnavailable : e.code;
      c.close(why);
      return;
    }
    case MsgType::kRequest:
      handle_request(*st, e);
      return;
    case MsgType::kResponse:
    case MsgType::kError: {
      auto it = calls_.find(e.id);
      if (it == calls_.end() || it->second.conn != c.id()) return;  // late (cancelled) or not ours
      Reply r;
      r.peer = st->peer;
      if (e.type == MsgType::kResponse) {
        r.result = e.body;
        stats_.replies_ok++;
      } else {
        r.code = e.code == ErrorCode::kOk ? ErrorCode::kInternal : e.code;
        r.message = std::string(e.message);
        stats_.replies_err++;
      }
      finish_call(e.id, r);
      return;
    }
    case MsgType::kReplyPart: {
      auto it = calls_.find(e.id);
      if (it == calls_.end() || it->second.conn != c.id()) return;
      if (it->second.on_part) {
        PartFn fn = it->second.on_part;  // the callback may end the call
        fn(*e.body, e.end);
      }
      return;
    }
    case MsgType::kPart: {
      if (!take_token(*st)) {
        violation(*st, ErrorCode::kRejected, "request flood");
        return;
      }
      stats_.parts_in++;
      auto it = st->inflight.find(e.id);
      if (it == st->inflight.end() || !it->second.on_part) return;
      PartFn fn = it->second.on_part;
      fn(*e.body, e.end);
      return;
    }
    case MsgType::kCancel:
      st->inflight.erase(e.id);
      return;
    case MsgType::kNotify: {
      if (!take_token(*st)) {
        violation(*st, ErrorCode::kRejected, "request flood");
        return;
      }
      stats_.notifies_in++;
      auto h = notify_handlers_.find(std::string(e.method));
      if (h == notify_handlers_.end()) return;
      PeerInfo from = st->peer;
      try {
        h->second(*e.body, from);
      } catch (const std::exception&) {
        // A bad one-way message has no one to answer; drop it.
      }
      return;
    }
  }
}

void Rpc::on_bad_frame(Connection& c, const std::string& why) {
  if (Conn* st = find_conn(c.id())) violation(*st, ErrorCode::kProtocol, why);
}

void Rpc::handle_hello(Conn& st, const Hello& h) {
  if (h.version != kProtocolVersion) {
    violation(st, ErrorCode::kRejected, "protocol version " + std::to_string(h.version) + " not supported", false);
    return;
  }
  if (h.swarm != opts_.swarm) {
    violation(st, ErrorCode::kRejected, "swarm mismatch: this node is in '" + opts_.swarm + "', peer in '" +
                                            h.swarm.substr(0, 64) + "'",
              false);
    return;
  }
  NodeId id;
  NodeId::from_bytes(h.peer_id, &id);
  PublicKey pk;
  std::copy(h.key.begin(), h.key.end(), pk.begin());
  if (peer_id_of(pk) != id) {
    violation(st, ErrorCode::kRejected, "peer id does not belong to the public key in the hello");
    return;
  }
  if (id == this->id()) {
    violation(st, ErrorCode::kRejected, "connected to itself", false);
    return;
  }
  int64_t skew = h.time_ms - wall_ms();
  if (std::llabs(skew) > opts_.limits.max_clock_skew_ms) {
    violation(st, ErrorCode::kRejected, "clocks differ by " + std::to_string(skew) + " ms", false);
    return;
  }
  if (!st.c->outgoing()) {
    if (uint64_t ms = backoff_.refused_for("id:" + id.hex(), now_ms())) {
      stats_.backed_off++;
      violation(st, ErrorCode::kRejected, "backed off for " + std::to_string(ms) + " ms after a violation", false);
      return;
    }
  }
  st.peer.id = id;
  if (!st.dial_key.empty()) {
    st.peer.listen = st.dial_key;  // we reached it there: that address is proven
  } else if (!h.listen.empty()) {
    // The announced address is believed only for the host the connection
    // comes from; a wildcard host takes the observed one.
    try {
      Address a = Address::parse(h.listen, false);
      Address remote = st.c->remote();
      if (a.is_unspecified() && a.family() == remote.family()) {
        remote.set_port(a.port());
        a = remote;
      }
      if (a.host() == st.c->remote().host() && a.port() != 0) st.peer.listen = a.to_string();
    } catch (const Error&) {
    }
  }
  st.peer_key = h.key;
  st.peer_nonce = h.nonce;
  st.hello_in = true;
  // Our identity proof, then the frames that waited for the handshake. The
  // peer checks our proof before it reads them; we check its proof (auth)
  // before we read anything else from it.
  const bool we_dialed = st.c->outgoing();
  st.c->send_control(encode_auth(opts_.identity->sign(transcript(st, we_dialed))));
  st.c->open_gate();
}

std::string Rpc::transcript(const Conn& st, bool signer_dialed) const {
  const bool we_dialed = st.c->outgoing();
  std::string_view my_key((const char*)identity().public_key().data(), kPublicKeyBytes);
  return auth_transcript(signer_dialed, opts_.swarm, we_dialed ? st.nonce : st.peer_nonce,
                         we_dialed ? st.peer_nonce : st.nonce, we_dialed ? my_key : st.peer_key,
                         we_dialed ? st.peer_key : my_key, st.c->channel_transcript());
}

void Rpc::handle_auth(Conn& st, std::string_view sig) {
  PublicKey pk;
  std::copy(st.peer_key.begin(), st.peer_key.end(), pk.begin());
  if (!verify_signature(pk, transcript(st, !st.c->outgoing()), sig)) {
    violation(st, ErrorCode::kRejected, "identity proof failed: the peer does not hold the key of the id it claims");
    return;
  }
  st.hello_done = true;
  // Only a proven peer's incoming connection carries our calls to its address.
  if (st.dial_key.empty() && !st.peer.listen.empty() && !by_addr_.count(st.peer.listen)) {
    by_addr_[st.peer.listen] = st.c->id();
    st.addr_key = st.peer.listen;
  }
  if (on_peer_hello) on_peer_hello(st.peer);
}

void Rpc::handle_request(Conn& st, const Envelope& e) {
  const Limits& L = opts_.limits;
  if (!take_token(st)) {
    violation(st, ErrorCode::kRejected, "request flood");
    return;
  }
  if (st.inflight.count(e.id)) {
    violation(st, ErrorCode::kProtocol, "duplicate request id " + std::to_string(e.id));
    return;
  }
  if (st.inflight.size() >= L.max_inflight) {
    violation(st, ErrorCode::kRejected, "more than " + std::to_string(L.max_inflight) + " requests in flight");
    return;
  }
  stats_.requests_in++;
  uint64_t conn_id = st.c->id();
  auto h = handlers_.find(std::string(e.method));
  if (h == handlers_.end()) {
    st.c->send(encode_error(e.id, ErrorCode::kUnknownMethod, "unknown method '" + std::string(e.method) + "'"));
    return;
  }
  uint64_t deadline = now_ms() + std::min(e.deadline_ms, L.max_deadline_ms);
  st.inflight[e.id] = InFlight{deadline, {}};
  Request req{e.method, *e.body, st.peer, deadline, Responder(this, conn_id, e.id), {}};
  try {
    h->second(req);
  } catch (const BadMessage& err) {
    req.fail(ErrorCode::kBadRequest, err.what());
  } catch (const std::exception& err) {
    req.fail(ErrorCode::kInternal, err.what());
  }
  if (req.on_part) {
    Conn* again = find_conn(conn_id);  // the handler may have closed it
    if (again) {
      auto it = again->inflight.find(e.id);
      if (it != again->inflight.end()) it->second.on_part = std::move(req.on_part);
    }
  }
}

uint64_t Rpc::bytes_in() const {
  uint64_t n = closed_bytes_in_;
  for (auto& [id, st] : conns_) n += st.c->bytes_in();
  return n;
}

uint64_t Rpc::bytes_out() const {
  uint64_t n = closed_bytes_out_;
  for (auto& [id, st] : conns_) n += st.c->bytes_out();
  return n;
}

void Rpc::on_closed(Connection& c, const std::string& why) {
  auto it = conns_.find(c.id());
  if (it == conns_.end()) return;
  Conn& st = it->second;
  release_pending(st);
  ErrorCode code = st.bye_code;
  PeerInfo peer = st.peer;
  bool was_hello = st.hello_done;
  closed_bytes_in_ += c.bytes_in();
  closed_bytes_out_ += c.bytes_out();
  for (const std::string* key : {&st.dial_key, &st.addr_key}) {
    auto a = by_addr_.find(*key);
    if (!key->empty() && a != by_addr_.end() && a->second == c.id()) by_addr_.erase(a);
  }
  if (!c.outgoing()) {
    auto p = per_ip_.find(c.remote().host());
    if (p != per_ip_.end() && --p->second <= 0) per_ip_.erase(p);
  }
  conns_.erase(it);
  std::vector<uint64_t> failed;
  for (auto& [id, call] : calls_)
    if (call.conn == c.id()) failed.push_back(id);
  for (uint64_t id : failed) {
    Reply r;
    r.code = code;
    r.message = why;
    r.peer = peer;
    finish_call(id, r);
  }
  if (was_hello && on_peer_closed) on_peer_closed(peer, why);
}

void Rpc::on_drain(Connection& c) {
  Conn* st = find_conn(c.id());
  if (!st) return;
  c.resume_reading();
  st = find_conn(c.id());  // frames delivered on resume may have closed it
  if (!st) return;
  auto waiters = std::move(st->drain_waiters);
  st->drain_waiters.clear();
  for (auto& fn : waiters) fn();
}

void Rpc::on_freed(uint64_t conn_id) { flushing_.erase(conn_id); }

// ---- replies (server side) ----------------------------------------------------

bool Rpc::send_reply(uint64_t conn_id, uint64_t id, std::string prefix, std::string payload, bool final,
                     std::string_view tail, std::shared_ptr<const void> keep) {
  Conn* st = find_conn(conn_id);
  if (!st) return false;
  auto it = st->inflight.find(id);
  if (it == st->inflight.end()) return false;
  const Limits& L = opts_.limits;
  if (st->c->queued() + prefix.size() + payload.size() + tail.size() > L.hard_write_queue) {
    violation(*st, ErrorCode::kRejected, "peer does not read its replies");
    return false;
  }
  if (final) st->inflight.erase(it);
  if (keep) st->c->send_ref(std::move(prefix) + payload, tail, std::move(keep));
  else st->c->send(std::move(prefix), std::move(payload));
  if (st->c->queued() > L.soft_write_queue) {
    // Back-pressure: stop taking requests from this peer until it reads.
    st->c->pause_reading();
    st->c->watch_drain(L.soft_write_queue / 2);
  }
  return true;
}

bool Responder::respond(std::string result) {
  return rpc_ && rpc_->send_reply(conn_, id_, response_prefix(id_), std::move(result), true);
}

bool Responder::fail(ErrorCode code, std::string_view message) {
  return rpc_ && rpc_->send_reply(conn_, id_, encode_error(id_, code, message), {}, true);
}

bool Responder::send_part(std::string data, bool end) {
  return rpc_ && rpc_->send_reply(conn_, id_, part_prefix(id_, end, true), std::move(data), false);
}

bool Responder::send_part_ref(std::string head, std::string_view tail, std::shared_ptr<const void> keep, bool end) {
  if (!keep) keep = std::make_shared<int>(0);
  return rpc_ && rpc_->send_reply(conn_, id_, part_prefix(id_, end, true), std::move(head), false, tail, std::move(keep));
}

bool Responder::alive() const {
  if (!rpc_) return false;
  auto* st = rpc_->find_conn(conn_);
  return st && st->inflight.count(id_);
}

size_t Responder::queued() const {
  auto* st = rpc_ ? rpc_->find_conn(conn_) : nullptr;
  return st ? st->c->queued() : 0;
}

void Responder::when_writable(std::function<void()> fn) {
  auto* st = rpc_ ? rpc_->find_conn(conn_) : nullptr;
  if (!st) return;
  size_t mark = rpc_->opts_.limits.soft_write_queue / 2;
  if (st->c->queued() <= mark) {
    fn();
    return;
  }
  st->drain_waiters.push_back(std::move(fn));
  st->c->watch_drain(mark);
}

// ---- calls (client side) ------------------------------------------------------

Rpc::Conn* Rpc::conn_for(const std::string& addr, std::string* err) {
  auto it = by_addr_.find(addr);
  if (it != by_addr_.end()) return find_conn(it->second);
  std::string key;
  Address a;
  try {
    a = Address::parse(addr);
    key = a.to_string();
  } catch (const Error& e) {
    *err = e.what();
    return nullptr;
  }
  it = by_addr_.find(key);
  if (it != by_addr_.end()) return find_conn(it->second);
  Connection* c = Connection::connect(loop_, a, this, opts_.limits.max_frame, opts_.swarm_key.get());
  adopt(c);
  Conn& st = conns_[c->id()];
  st.dial_key = key;
  by_addr_[key] = c->id();
  return &st;
}

uint64_t Rpc::call(const std::string& addr, std::string_view method, std::string args, uint32_t timeout_ms,
                   ReplyFn done, PartFn on_part) {
  uint64_t id = next_call_id_++;
  stats_.calls++;
  if (closed_) {
    Reply r;
    r.code = ErrorCode::kUnavailable;
    r.message = "node is shutting down";
    done(r);
    return id;
  }
  Call call;
  call.done = std::move(done);
  call.on_part = std::move(on_part);
  call.deadline_ms = now_ms() + timeout_ms;
  std::string err;
  Conn* st = conn_for(addr, &err);
  if (!st) {
    call.pre_error = ErrorCode::kUnavailable;
    call.pre_message = err;
  } else if (st->c->queued() + args.size() > opts_.limits.hard_write_queue) {
    call.pre_error = ErrorCode::kOverloaded;
    call.pre_message = "send buffer to " + addr + " is full";
  }
  if (call.pre_error != ErrorCode::kOk) {
    call.conn = 0;
    call.deadline_ms = now_ms();  // reported from the timer, never from inside call()
  } else {
    call.conn = st->c->id();
    st->calls++;
    st->c->send(request_prefix(id, method, timeout_ms), std::move(args));
  }
  call.timer_it = deadlines_.emplace(call.deadline_ms, id);
  calls_.emplace(id, std::move(call));
  arm_deadline_timer();
  return id;
}

void Rpc::finish_call(uint64_t call_id, const Reply& r) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return;
  Call call = std::move(it->second);
  calls_.erase(it);
  deadlines_.erase(call.timer_it);
  if (Conn* st = find_conn(call.conn)) st->calls--;
  if (!call.done) return;
  try {
    call.done(r);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "net: reply callback failed: %s\n", e.what());
  }
}

bool Rpc::send_part(uint64_t call_id, std::string data, bool end) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return false;
  Conn* st = find_conn(it->second.conn);
  if (!st || st->c->queued() + data.size() > opts_.limits.hard_write_queue) return false;
  st->c->send(part_prefix(call_id, end, false), std::move(data));
  return true;
}

size_t Rpc::call_queued(uint64_t call_id) const {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return 0;
  auto c = conns_.find(it->second.conn);
  return c == conns_.end() ? 0 : c->second.c->queued();
}

size_t Rpc::queued_bytes() const {
  size_t n = 0;
  for (auto& [id, st] : conns_) n += st.c->queued();
  return n;
}

void Rpc::cancel(uint64_t call_id) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return;
  if (Conn* st = find_conn(it->second.conn)) st->c->send(encode_cancel(call_id));
  Reply r;
  r.code = ErrorCode::kCancelled;
  r.message = "cancelled";
  finish_call(call_id, r);
}

bool Rpc::notify(const std::string& addr, std::string_view method, std::string args) {
  if (closed_) return false;
  std::string err;
  Conn* st = conn_for(addr, &err);
  if (!st || st->c->queued() + args.size() > opts_.limits.hard_write_queue) return false;
  st->c->send(notify_prefix(method), std::move(args));
  return true;
}

// ---- timers ---------------------------------------------------------------------

void Rpc::arm_deadline_timer() {
  if (closed_) return;
  if (deadlines_.empty()) {
    uv_timer_stop(deadline_timer_);
    armed_for_ = UINT64_MAX;
    return;
  }
  uint64_t first = deadlines_.begin()->first;
  if (first == armed_for_) return;
  armed_for_ = first;
  uint64_t now = now_ms();
  uv_timer_start(deadline_timer_, on_deadline_timer, first > now ? first - now : 0, 0);
}

void Rpc::on_deadline_timer(uv_timer_t* t) {
  auto* self = (Rpc*)t->data;
  self->armed_for_ = UINT64_MAX;
  uint64_t now = self->now_ms();
  while (!self->deadlines_.empty() && self->deadlines_.begin()->first <= now) {
    uint64_t id = self->deadlines_.begin()->second;
    auto it = self->calls_.find(id);
    Reply r;
    if (it->second.pre_error != ErrorCode::kOk) {
      r.code = it->second.pre_error;
      r.message = it->second.pre_message;
    } else {
      r.code = ErrorCode::kDeadlineExceeded;
      r.message = "no reply before the deadline";
      if (Conn* st = self->find_conn(it->second.conn)) {
        r.peer = st->peer;
        st->c->send(encode_cancel(id));
      }
    }
    self->finish_call(id, r);
  }
  self->arm_deadline_timer();
}

void Rpc::on_sweep_timer(uv_timer_t* t) { ((Rpc*)t->data)->sweep(); }

void Rpc::sweep() {
  const Limits& L = opts_.limits;
  uint64_t now = now_ms();
  std::vector<std::pair<uint64_t, std::string>> to_close, slow;
  for (auto& [id, st] : conns_) {
    if (!st.hello_done && now - st.c->created_ms() > L.handshake_timeout_ms) {
      // Silence may be an honest peer's broken network; a hello trickled too
      // slowly to finish is an attack and is backed off.
      auto& list = st.c->bytes_in() > 0 ? slow : to_close;
      list.push_back({id, "no handshake within " + std::to_string(L.handshake_timeout_ms) + " ms"});
      continue;
    }
    // Only peers that dialled us: replies to our own calls are bounded by our calls' deadlines,
    // and a slow link must not cut a large reply we asked for.
    uint64_t started = st.c->outgoing() ? 0 : st.c->frame_started_ms();
    if (started && !st.c->paused() && now - started > L.frame_timeout_ms) {
      slow.push_back({id, "frame not completed within " + std::to_string(L.frame_timeout_ms) + " ms"});
      continue;
    }
    // Requests whose caller gave up long ago stop counting against the limit.
    for (auto it = st.inflight.begin(); it != st.inflight.end();)
      it = it->second.deadline_ms + 1000 < now ? st.inflight.erase(it) : std::next(it);
    if (now - st.c->last_read_ms() > 1000) st.c->shrink_buffers();  // quiet peers stay cheap
    if (st.hello_done && st.calls == 0 && st.inflight.empty() && now - st.c->last_read_ms() > L.idle_timeout_ms)
      to_close.push_back({id, "idle"});
  }
  for (auto& [id, why] : to_close)
    if (Conn* st = find_conn(id)) st->c->close(why);
  for (auto& [id, why] : slow)
    if (Conn* st = find_conn(id)) violation(*st, ErrorCode::kProtocol, why);
  backoff_.forget_old(now);
  std::vector<Connection*> stuck;
  for (auto& [id, f] : flushing_)
    if (now - f.since_ms > kFlushGraceMs) stuck.push_back(f.c);
  for (Connection* c : stuck) c->force_close();
}

void Rpc::close() {
  if (closed_) return;
  closed_ = true;
  if (listener_) close_and_delete(listener_);
  listener_ = nullptr;
  close_and_delete(deadline_timer_);
  close_and_delete(sweep_timer_);
  std::vector<Connection*> open;
  for (auto& [id, st] : conns_) open.push_back(st.c);
  for (Connection* c : open) c->close("node is shutting down");
  for (Connection* c : open) c->set_owner(&g_orphans);
  for (auto& [id, f] : flushing_) {
    f.c->set_owner(&g_orphans);
    f.c->force_close();
  }
  flushing_.clear();
  // Calls that never reached a connection.
  while (!calls_.empty()) {
    Reply r;
    r.code = ErrorCode::kUnavailable;
    r.message = "node is shutting down";
    finish_call(calls_.begin()->first, r);
  }
}

}  // namespace engine::net
