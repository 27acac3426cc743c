// train.state: the server streams a snapshot in parts, paced by the
// connection's write queue; the downloader checks order, size, checksum and
// epoch, and bounds what it holds.
//
// Part:   {"offset": uint, "data": bin (<= chunk_bytes)}    in order, from 0
// Result: {"epoch": int, "size": uint, "xxh3": uint}         after the last part
#include "train/state_transfer.h"

#include <xxhash.h>

#include <algorithm>

#include "net/msg.h"
#include "train/state_messages.h"

namespace engine::train {

using net::BadMessage;
using net::ErrorCode;

namespace {

struct HashState {
  XXH3_state_t* s = XXH3_createState();
  HashState() { XXH3_64bits_reset(s); }
  ~HashState() { XXH3_freeState(s); }
  HashState(const HashState&) = delete;
  HashState& operator=(const HashState&) = delete;
  void update(std::string_view d) { XXH3_64bits_update(s, d.data(), d.size()); }
  uint64_t digest() const { return XXH3_64bits_digest(s); }
};

// One download being served: the snapshot is kept alive until its last part left.
struct Upload {
  std::shared_ptr<int> active;  // the server's count of uploads, which this one is part of
  ~Upload() { --*active; }
  net::Responder out;
  StateSnapshot snap;
  size_t chunk = 0;
  size_t pause_above = 0;  // queued bytes above which we wait for the peer to read
  size_t offset = 0;
  HashState hash;
};

// Sends parts until the connection's queue is full, then resumes from
// when_writable; ends with the result. A peer that goes away (or whose deadline
// passes) makes send fail or alive() false, and the upload is simply dropped.
void pump(const std::shared_ptr<Upload>& u) {
  const std::string& bytes = *u->snap.bytes;
  while (u->offset < bytes.size()) {
    if (!u->out.alive()) return;
    size_t n = std::min(u->chunk, bytes.size() - u->offset);
    std::string_view data(bytes.data() + u->offset, n);
    if (!u->out.send_part_ref(encode_state_part_head(u->offset, n), data, u->snap.bytes)) return;
    u->hash.update(data);
    u->offset += n;
    if (u->out.queued() > u->pause_above) {
      u->out.when_writable([u] { pump(u); });
      return;
    }
  }
  u->out.respond(encode_state_result({u->snap.epoch, bytes.size(), u->hash.digest()}));
}

}  // namespace

// ---- server -------------------------------------------------------------------------

StateServer::StateServer(net::Rpc& rpc, std::function<StateSnapshot()> snapshot, size_t chunk_bytes,
                         int max_uploads)
    : rpc_(rpc), snapshot_(std::move(snapshot)), max_uploads_(max_uploads) {
  // A part must fit in one frame with its envelope; keep 4 KiB for that.
  size_t max_chunk = rpc.options().limits.max_frame - 4096;
  chunk_bytes_ = std::clamp<size_t>(chunk_bytes, 1, max_chunk);
  rpc_.handle("train.state", [this](net::Request& r) {
    int64_t min_epoch = -1;
    if (auto* f = net::find_field(net::as_map(r.args, "args"), "min_epoch")) min_epoch = net::as_int(*f, "min_epoch");
    StateSnapshot snap = snapshot_();
    if (!snap.bytes) {
      r.fail(ErrorCode::kNotFound, "no training state to offer yet");
      return;
    }
    if (snap.epoch < min_epoch) {
      r.fail(ErrorCode::kNotFound, "state is at epoch " + std::to_string(snap.epoch) + ", older than min_epoch " +
                                       std::to_string(min_epoch));
      return;
    }
    // A peer that stops reading keeps its upload (and snapshot) until its
    // connection closes: bound how many such snapshots we can be made to hold.
    if (*active_ >= max_uploads_) {
      r.fail(ErrorCode::kOverloaded, "too many state downloads in progress; retry later");
      return;
    }
    auto u = std::make_shared<Upload>();
    u->active = active_;
    ++*active_;
    u->out = r.responder;
    u->snap = std::move(snap);
    u->chunk = chunk_bytes_;
    u->pause_above = rpc_.options().limits.soft_write_queue;
    pump(u);
  });
}

// Uploads in progress hold their snapshot themselves and finish on their own.
StateServer::~StateServer() {
  rpc_.handle("train.state", [](net::Request& r) { r.fail(ErrorCode::kUnavailable, "state server stopped"); });
}

// ---- downloader ---------------------------------------------------------------------

namespace {

struct Download {
  net::Rpc* rpc;
  std::string addr;
  int64_t min_epoch;
  uint64_t max_bytes;
  uint64_t call_id = 0;
  std::string bytes;
  HashState hash;
  std::string error;  // set by a bad part; the call is then cancelled
  std::function<void(DownloadResult)> done;

  void on_part(const msgpack::object& part) {
    if (!error.empty()) return;
    try {
      const auto [offset, data] = decode_state_part(part);
      if (offset != bytes.size())
        throw BadMessage("part at offset " + std::to_string(offset) + ", expected " + std::to_string(bytes.size()));
      if (bytes.size() + data.size() > max_bytes)
        throw BadMessage("state larger than the limit of " + std::to_string(max_bytes) + " bytes");
      bytes.append(data);
      hash.update(data);
    } catch (const BadMessage& e) {
      error = addr + ": bad state part: " + e.what();
      rpc->cancel(call_id);  // reports through on_reply, now
    }
  }

  void on_reply(const net::Reply& r) {
    DownloadResult res;
    res.error = check(r, &res.epoch);
    res.ok = res.error.empty();
    res.refused = r.code == ErrorCode::kNotFound;
    if (res.ok) res.bytes = std::move(bytes);
    auto fn = std::move(done);
    fn(std::move(res));
  }

  // "" when the reply and what arrived agree; the reason otherwise.
  std::string check(const net::Reply& r, int64_t* epoch) {
    if (!error.empty()) return error;
    if (!r.ok()) return addr + ": " + r.message;
    try {
      const auto [result_epoch, size, xxh3] = decode_state_result(*r.result);
      *epoch = result_epoch;
      if (size != bytes.size())
        return addr + ": state size mismatch: announced " + std::to_string(size) + " bytes, received " +
               std::to_string(bytes.size());
      if (xxh3 != hash.digest()) return addr + ": state checksum mismatch (xxh3 of the received bytes differs)";
      if (*epoch < min_epoch)
        return addr + ": state is at epoch " + std::to_string(*epoch) + ", older than min_epoch " +
               std::to_string(min_epoch);
    } catch (const BadMessage& e) {
      return addr + ": bad train.state result: " + e.what();
    }
    return "";
  }
};

}  // namespace

void download_state(net::Rpc& rpc, const std::string& addr, int64_t min_epoch, uint32_t timeout_ms,
                    uint64_t max_bytes, std::function<void(DownloadResult)> done) {
  auto d = std::make_shared<Download>();
  d->rpc = &rpc;
  d->addr = addr;
  d->min_epoch = min_epoch;
  d->max_bytes = max_bytes;
  d->done = std::move(done);
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(1);
  net::pack_str(pk, "min_epoch");
  pk.pack_int64(min_epoch);
  d->call_id = rpc.call(
      addr, "train.state", std::move(b.s), timeout_ms, [d](const net::Reply& r) { d->on_reply(r); },
      [d](const msgpack::object& part, bool) { d->on_part(part); });
}

}  // namespace engine::train
