// One TCP connection on a libuv loop: framed reads, queued writes, and a
// clean close. It knows nothing about messages; its owner (net/rpc) gets
// whole frame bodies and decides what they mean.
#pragma once
#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "net/address.h"
#include "net/frame.h"
#include "net/handshake.h"

namespace engine::net {

class Connection;

class ConnectionOwner {
 public:
  virtual ~ConnectionOwner() = default;
  virtual void on_connected(Connection& c) = 0;                     // TCP is up (both directions)
  virtual void on_frame(Connection& c, std::string_view body) = 0;  // one verified frame body
  virtual void on_bad_frame(Connection& c, const std::string& why) = 0;  // stream is unusable; close it
  virtual void on_closed(Connection& c, const std::string& why) = 0;  // once, at close()
  virtual void on_drain(Connection& c) = 0;  // queue fell below the mark set with watch_drain
  virtual void on_freed(uint64_t conn_id) = 0;  // memory released; the pointer is now invalid
  // A checked header announced `body` bytes that have not all arrived (they
  // will be buffered). false: the owner refused it and closed the connection.
  virtual bool on_frame_begun(Connection&, size_t /*body*/) { return true; }
};

class Connection {
 public:
  // Accepts a pending connection on `server`; nullptr (and *err) on failure.
  // With psk (a private swarm), the swarm-key handshake runs first and every
  // frame is then sealed (net/secure_frames.h); frames sent before it ends
  // are held. A peer that fails it is closed without a byte sent to it.
  static Connection* accept(uv_stream_t* server, ConnectionOwner* owner, size_t max_frame, std::string* err,
                            const SwarmKey* psk = nullptr);
  // Starts connecting; on_connected or on_closed follows.
  static Connection* connect(uv_loop_t* loop, const Address& to, ConnectionOwner* owner, size_t max_frame,
                             const SwarmKey* psk = nullptr);

  // Queues one frame whose body is prefix + payload (sent without joining them).
  // Frames sent before the TCP connect completes are held and flushed after it.
  void send(std::string prefix, std::string payload = {});
  // Same, with the frame's last bytes sent straight from caller memory (a
  // tensor's data) that `keep` holds alive until the write completes.
  void send_ref(std::string prefix, std::string_view tail, std::shared_ptr<const void> keep);
  // While the gate is closed, send()/send_ref() frames wait (in order) and only
  // send_control() frames go out: the owner's handshake runs first.
  void close_gate() { gated_ = true; }
  void open_gate();
  void send_control(std::string body);
  // Hash of the swarm-key handshake ("" in open swarms): the identity proof
  // signs it, binding the identities to this encrypted channel.
  const std::string& channel_transcript() const { return transcript_; }
  // Closes now; queued writes are dropped. With flush, queued writes go out
  // first (the owner must force_close() if the peer never reads them).
  void close(const std::string& why, bool flush = false);
  void force_close();

  // Gives back a large read buffer once nothing is buffered.
  void shrink_buffers() { reader_.shrink(); }
  void pause_reading();
  void resume_reading();
  // on_drain fires once when the write queue falls to `bytes` or below.
  void watch_drain(size_t bytes) { drain_mark_ = bytes; }
  // Hands the connection to another owner (e.g. one that ignores everything
  // while it closes after the first owner is gone).
  void set_owner(ConnectionOwner* owner) { owner_ = owner; }

  uint64_t id() const { return id_; }
  bool outgoing() const { return outgoing_; }
  bool is_open() const { return state_ == kConnecting || state_ == kOpen; }
  bool connected() const { return state_ == kOpen; }
  const Address& remote() const { return remote_; }
  size_t queued() const { return queued_; }
  uint64_t created_ms() const { return created_ms_; }
  uint64_t last_read_ms() const { return last_read_ms_; }
  // Loop time since which bytes of an incomplete frame have been held; 0 = none.
  // The owner closes peers that never finish a frame (slow-loris).
  uint64_t frame_started_ms() const { return frame_started_ms_; }
  bool paused() const { return paused_; }
  uint64_t bytes_in() const { return bytes_in_; }
  uint64_t bytes_out() const { return bytes_out_; }

 private:
  enum State { kConnecting, kOpen, kClosing, kClosed };
  struct Write;
  Connection(uv_loop_t* loop, ConnectionOwner* owner, size_t max_frame, bool outgoing);
  ~Connection();
  void start_reading();
  void write_now(Write* w);
  void queue(Write* w);
  Write* make_write(std::string prefix, std::string payload, std::string_view tail, std::shared_ptr<const void> keep);
  bool take_preamble();
  void submit(Write* w, bool control);
  void write_raw(const std::string& bytes);
  void on_read(ssize_t nread);
  void deliver_frames();
  static void alloc_cb(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void write_cb(uv_write_t* req, int status);
  static void connect_cb(uv_connect_t* req, int status);
  static void shutdown_cb(uv_shutdown_t* req, int status);
  static void close_cb(uv_handle_t* h);

  uv_tcp_t tcp_;
  uv_connect_t connect_req_;
  uv_shutdown_t shutdown_req_;
  ConnectionOwner* owner_;
  uint64_t id_;
  bool outgoing_;
  bool reading_ = false;
  bool paused_ = false;
  bool notified_ = false;    // on_closed was called
  std::string early_error_;  // connect() failed before reaching the loop
  State state_ = kConnecting;
  Address remote_;
  FrameReader reader_;
  std::deque<Write*> held_;  // frames sent before the connect completed
  std::deque<Write*> gated_q_;  // send() frames waiting for open_gate()
  bool gated_ = false;
  std::unique_ptr<ChannelHandshake> hs_;  // swarm-key handshake in progress
  bool private_ = false;                  // a swarm key is in use
  bool sealed_ = false;                   // handshake done: frames are sealed records
  ChannelKey send_key_{};
  uint64_t send_seq_ = 0;
  std::string transcript_;
  size_t queued_ = 0;
  size_t drain_mark_ = SIZE_MAX;
  uint64_t created_ms_, last_read_ms_;
  uint64_t frame_started_ms_ = 0;
  bool begun_told_ = false;  // on_frame_begun was called for the current frame
  uint64_t bytes_in_ = 0, bytes_out_ = 0;
};

}  // namespace engine::net
