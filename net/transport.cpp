#include "net/transport.h"

#include <cstring>

#include "net/secure_frames.h"

namespace engine::net {

static uint64_t g_next_conn_id = 1;

struct Connection::Write {
  uv_write_t req;
  uint8_t header[kFrameHeaderSize];
  std::string prefix, payload;
  std::string_view tail;
  std::shared_ptr<const void> keep;
  std::unique_ptr<uint8_t[]> sealed;  // the whole record, private swarms
  bool raw = false;                   // handshake bytes, sent as they are
  size_t bytes = 0;                   // on the wire
  Connection* conn;
  size_t size() const { return bytes; }
  size_t body() const { return prefix.size() + payload.size() + tail.size(); }
};

Connection::Connection(uv_loop_t* loop, ConnectionOwner* owner, size_t max_frame, bool outgoing)
    : owner_(owner), id_(g_next_conn_id++), outgoing_(outgoing), reader_(max_frame) {
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
  created_ms_ = last_read_ms_ = uv_now(loop);
}

Connection::~Connection() {
  for (Write* w : held_) delete w;
  for (Write* w : gated_q_) delete w;
}

Connection* Connection::accept(uv_stream_t* server, ConnectionOwner* owner, size_t max_frame, std::string* err,
                               const SwarmKey* psk) {
  auto* c = new Connection(server->loop, owner, max_frame, false);
  if (psk) {
    c->private_ = true;
    c->hs_ = std::make_unique<ChannelHandshake>(*psk, false);
  }
  int rc = uv_accept(server, (uv_stream_t*)&c->tcp_);
  if (rc == 0) {
    sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp_, (sockaddr*)&ss, &len) == 0) c->remote_ = Address::from_sockaddr((sockaddr*)&ss);
    else rc = UV_ENOTCONN;
  }
  if (rc != 0) {
    *err = uv_strerror(rc);
    c->state_ = kClosed;
    uv_close((uv_handle_t*)&c->tcp_, close_cb);
    return nullptr;
  }
  uv_tcp_nodelay(&c->tcp_, 1);
  c->state_ = kOpen;
  c->start_reading();
  return c;
}

Connection* Connection::connect(uv_loop_t* loop, const Address& to, ConnectionOwner* owner, size_t max_frame,
                                const SwarmKey* psk) {
  auto* c = new Connection(loop, owner, max_frame, true);
  if (psk) {
    c->private_ = true;
    c->hs_ = std::make_unique<ChannelHandshake>(*psk, true);
  }
  c->remote_ = to;
  c->connect_req_.data = c;
  int rc = uv_tcp_connect(&c->connect_req_, &c->tcp_, to.sa(), connect_cb);
  if (rc != 0) {
    // Reported from close_cb, like any other connect error, so the owner
    // never sees a callback from inside connect().
    c->state_ = kClosed;
    c->early_error_ = "connect to " + to.to_string() + ": " + uv_strerror(rc);
    uv_close((uv_handle_t*)&c->tcp_, close_cb);
  }
  return c;
}

void Connection::connect_cb(uv_connect_t* req, int status) {
  auto* c = (Connection*)req->data;
  if (c->state_ != kConnecting) return;  // closed while connecting
  if (status < 0) {
    c->close(std::string("connect to ") + c->remote_.to_string() + ": " + uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(&c->tcp_, 1);
  c->state_ = kOpen;
  c->start_reading();
  c->owner_->on_connected(*c);
  if (c->hs_) {  // the swarm-key handshake first; held frames wait for its end
    if (c->state_ == kOpen) c->write_raw(c->hs_->opening());
    return;
  }
  while (c->state_ == kOpen && !c->held_.empty()) {
    Write* w = c->held_.front();
    c->held_.pop_front();
    c->write_now(w);
  }
}

void Connection::start_reading() {
  if (reading_ || paused_ || state_ != kOpen) return;
  reading_ = uv_read_start((uv_stream_t*)&tcp_, alloc_cb, read_cb) == 0;
}

void Connection::pause_reading() {
  paused_ = true;
  if (reading_) uv_read_stop((uv_stream_t*)&tcp_);
  reading_ = false;
}

void Connection::resume_reading() {
  if (!paused_) return;
  paused_ = false;
  // Time spent paused by us is not the peer's: its frame's clock restarts.
  if (frame_started_ms_) frame_started_ms_ = uv_now(tcp_.loop);
  start_reading();
  // Frames that arrived before the pause are already buffered.
  if (state_ == kOpen) deliver_frames();
}

void Connection::alloc_cb(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  auto* c = (Connection*)h->data;
  size_t got;
  char* p = c->reader_.write_space(suggested, &got);
  *buf = uv_buf_init(p, (unsigned)std::min<size_t>(got, 1u << 30));
}

void Connection::read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  ((Connection*)s->data)->on_read(nread);
}

void Connection::on_read(ssize_t nread) {
  if (state_ != kOpen) return;
  if (nread == 0) return;  // EAGAIN
  if (nread < 0) {
    if (hs_ && outgoing_)
      close("the peer closed the connection during the swarm-key handshake (it does not hold our --swarm-key, "
            "or it is not in a private swarm)");
    else if (outgoing_ && bytes_in_ == 0 && nread == UV_EOF)
      close("the peer closed the connection without a word (a private swarm? join it with its --swarm-key)");
    else
      close(nread == UV_EOF ? "peer closed the connection" : std::string("read: ") + uv_strerror((int)nread));
    return;
  }
  reader_.commit((size_t)nread);
  bytes_in_ += (uint64_t)nread;
  last_read_ms_ = uv_now(tcp_.loop);
  if (hs_ && !take_preamble()) return;
  deliver_frames();
}

bool Connection::take_preamble() {
  const uint8_t* p = reader_.take_raw(kPreambleBytes);
  if (!p) return false;
  std::string reply;
  if (!hs_->receive(p, &reply)) {
    // Not a holder of our key: it gets nothing more from us, not even a reason.
    close(outgoing_ ? "swarm-key handshake failed: the peer does not hold our --swarm-key"
                    : "swarm-key handshake failed");
    return false;
  }
  if (!reply.empty()) write_raw(reply);
  if (state_ != kOpen) return false;
  const ChannelKeys& k = hs_->keys();
  send_key_ = k.send;
  reader_.set_opener(k.recv);
  transcript_ = k.transcript;
  hs_.reset();
  sealed_ = true;
  while (state_ == kOpen && !held_.empty()) {
    Write* w = held_.front();
    held_.pop_front();
    write_now(w);
  }
  return state_ == kOpen;
}

void Connection::write_raw(const std::string& bytes) {
  auto* w = new Write;
  w->conn = this;
  w->raw = true;
  w->payload = bytes;
  w->bytes = bytes.size();
  queued_ += w->bytes;
  write_now(w);
}

void Connection::deliver_frames() {
  std::string_view body;
  for (;;) {
    FrameReader::Result r = reader_.next(&body);
    if (r == FrameReader::kNeedMore) {
      // Bytes left over belong to a frame that began arriving no earlier than
      // the last one completed (or than now, if nothing was pending).
      if (reader_.buffered() == 0) frame_started_ms_ = 0;
      else if (frame_started_ms_ == 0) frame_started_ms_ = uv_now(tcp_.loop);
      if (size_t n = reader_.announced(); n > 0 && !begun_told_) {
        begun_told_ = true;
        if (!owner_->on_frame_begun(*this, n) && state_ == kOpen) close("frame refused");
      }
      break;
    }
    if (r == FrameReader::kError) {
      std::string why = std::string("bad frame: ") + frame_error_name(reader_.error());
      owner_->on_bad_frame(*this, why);
      close(why);
      return;
    }
    frame_started_ms_ = 0;  // progress: the next frame's clock starts with its first byte
    begun_told_ = false;
    owner_->on_frame(*this, body);
    if (state_ != kOpen || paused_) break;
  }
}

Connection::Write* Connection::make_write(std::string prefix, std::string payload, std::string_view tail,
                                          std::shared_ptr<const void> keep) {
  auto* w = new Write;
  w->conn = this;
  w->prefix = std::move(prefix);
  w->payload = std::move(payload);
  w->tail = tail;
  w->keep = std::move(keep);
  if (private_) {
    w->bytes = sealed_size(w->body());  // sealed when written, in wire order (the nonce is the sequence number)
  } else {
    write_frame_header(w->header, w->prefix, w->payload, w->tail);
    w->bytes = kFrameHeaderSize + w->body();
  }
  return w;
}

void Connection::send(std::string prefix, std::string payload) {
  if (state_ == kClosing || state_ == kClosed) return;
  submit(make_write(std::move(prefix), std::move(payload), {}, nullptr), false);
}

void Connection::send_ref(std::string prefix, std::string_view tail, std::shared_ptr<const void> keep) {
  if (state_ == kClosing || state_ == kClosed) return;
  submit(make_write(std::move(prefix), {}, tail, std::move(keep)), false);
}

void Connection::send_control(std::string body) {
  if (state_ == kClosing || state_ == kClosed) return;
  submit(make_write(std::move(body), {}, {}, nullptr), true);
}

void Connection::submit(Write* w, bool control) {
  queued_ += w->size();
  if (gated_ && !control) gated_q_.push_back(w);
  else queue(w);
}

void Connection::open_gate() {
  gated_ = false;
  while (!gated_q_.empty() && (state_ == kConnecting || state_ == kOpen)) {
    Write* w = gated_q_.front();
    gated_q_.pop_front();
    queue(w);
  }
}

void Connection::queue(Write* w) {
  if (state_ == kConnecting || hs_) held_.push_back(w);
  else write_now(w);
}

void Connection::write_now(Write* w) {
  uv_buf_t bufs[4];
  int n = 0;
  if (w->raw) {
    bufs[n++] = uv_buf_init(w->payload.data(), (unsigned)w->payload.size());
  } else if (sealed_) {
    w->sealed.reset(new uint8_t[w->bytes]);  // not zero-filled: seal_record writes every byte
    seal_record(send_key_, send_seq_++, w->prefix, w->payload, w->tail, w->sealed.get());
    std::string().swap(w->prefix);
    std::string().swap(w->payload);
    w->keep.reset();  // the caller's memory is no longer needed
    bufs[n++] = uv_buf_init((char*)w->sealed.get(), (unsigned)w->bytes);
  } else {
    bufs[n++] = uv_buf_init((char*)w->header, kFrameHeaderSize);
    if (!w->prefix.empty()) bufs[n++] = uv_buf_init(w->prefix.data(), (unsigned)w->prefix.size());
    if (!w->payload.empty()) bufs[n++] = uv_buf_init(w->payload.data(), (unsigned)w->payload.size());
    if (!w->tail.empty()) bufs[n++] = uv_buf_init((char*)w->tail.data(), (unsigned)w->tail.size());
  }
  w->req.data = w;
  int rc = uv_write(&w->req, (uv_stream_t*)&tcp_, bufs, n, write_cb);
  if (rc != 0) {
    queued_ -= w->size();
    delete w;
    close(std::string("write: ") + uv_strerror(rc));
  }
}

void Connection::write_cb(uv_write_t* req, int status) {
  auto* w = (Write*)req->data;
  Connection* c = w->conn;
  c->queued_ -= w->size();
  if (status == 0) c->bytes_out_ += w->size();
  delete w;
  if (status < 0) {
    c->close(std::string("write: ") + uv_strerror(status));
    return;
  }
  if (c->state_ == kOpen && c->queued_ <= c->drain_mark_) {
    c->drain_mark_ = SIZE_MAX;
    c->owner_->on_drain(*c);
  }
}

void Connection::close(const std::string& why, bool flush) {
  if (state_ == kClosing || state_ == kClosed) return;
  bool was_open = state_ == kOpen;
  state_ = kClosing;
  if (reading_) uv_read_stop((uv_stream_t*)&tcp_);
  reading_ = false;
  notified_ = true;
  owner_->on_closed(*this, why);
  shutdown_req_.data = this;
  if (flush && was_open && queued_ > 0 &&
      uv_shutdown(&shutdown_req_, (uv_stream_t*)&tcp_, shutdown_cb) == 0)
    return;  // shutdown_cb closes the handle once the queue is written
  force_close();
}

void Connection::shutdown_cb(uv_shutdown_t* req, int) { ((Connection*)req->data)->force_close(); }

void Connection::force_close() {
  if (state_ == kClosed) return;
  if (state_ != kClosing) {
    close("closed");
    if (state_ == kClosed) return;
  }
  state_ = kClosed;
  uv_close((uv_handle_t*)&tcp_, close_cb);
}

void Connection::close_cb(uv_handle_t* h) {
  auto* c = (Connection*)h->data;
  ConnectionOwner* owner = c->owner_;
  uint64_t id = c->id_;
  if (!c->notified_) owner->on_closed(*c, c->early_error_);
  delete c;
  owner->on_freed(id);
}

}  // namespace engine::net
