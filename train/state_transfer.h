// Downloading a training state from a peer of the run (hivemind's
// load_state_from_peers): a peer that starts late, restarts, falls behind the
// global epoch, or finds its parameter checksum in the minority asks another
// peer for its whole state (parameters, optimizer moments, epoch).
//
// train.state request {min_epoch} → streamed parts of at most chunk_bytes, then a
// final reply {epoch, size, xxh3}. The downloader checks the byte count and the
// xxh3 of what arrived, and refuses a state older than min_epoch. Bytes are
// opaque here (train/pretrain.h serialize_state makes them).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "net/rpc.h"

namespace engine::train {

struct StateSnapshot {
  int64_t epoch = -1;
  std::shared_ptr<const std::string> bytes;  // null: nothing to offer yet
};

class StateServer {
 public:
  // Registers train.state on rpc. `snapshot` is called on the loop thread and must
  // be thread-safe with whoever updates the state.
  // chunk_bytes is clamped to [1, max_frame - 4 KiB]. A request with min_epoch
  // above the snapshot's epoch, or with no snapshot yet, fails with code 10.
  // Parts are paced by the connection's write queue (at most about
  // soft_write_queue + chunk_bytes queued), so a large state never hits the hard limit.
  // At most max_uploads downloads are served at once (more: code 5, overloaded);
  // each holds its snapshot until it ends or its connection closes.
  StateServer(net::Rpc& rpc, std::function<StateSnapshot()> snapshot, size_t chunk_bytes = 1u << 20,
              int max_uploads = 4);
  ~StateServer();  // answers later train.state requests with code 4
  StateServer(const StateServer&) = delete;
  StateServer& operator=(const StateServer&) = delete;

 private:
  net::Rpc& rpc_;
  std::function<StateSnapshot()> snapshot_;
  size_t chunk_bytes_;
  int max_uploads_;
  std::shared_ptr<int> active_ = std::make_shared<int>(0);  // shared with uploads that outlive us
};

struct DownloadResult {
  bool ok = false;
  std::string error;
  int64_t epoch = -1;
  std::string bytes;
  // The source answered "not found": it has no state at min_epoch or later, so a
  // progress record of its that claims such an epoch is false.
  bool refused = false;
};

// Loop thread. done once, by timeout_ms (the whole transfer: size it for the
// state and the link). max_bytes bounds what a hostile peer can make us hold.
// ok is false, with a message naming addr, on: an error reply or timeout, a
// malformed or out-of-order part, more than max_bytes, a size or XXH3 mismatch
// with the final result, or an epoch below min_epoch.
void download_state(net::Rpc& rpc, const std::string& addr, int64_t min_epoch, uint32_t timeout_ms,
                    uint64_t max_bytes, std::function<void(DownloadResult)> done);

}  // namespace engine::train
