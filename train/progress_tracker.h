// DeDLOC's progress tracker: each peer of a run publishes its progress under the
// DHT key "<run>.progress", subkey "@<peer id hex>" (only that peer may write it):
//   {epoch, samples, sps, time, addr, bandwidth, client, params_xxh3}
// re-published every `period_s` with expiration time + ttl_s, so a peer that
// vanishes drops out of the sum by itself. The collaboration's progress at the
// current epoch is the sum of the samples reported for it; the global epoch is the
// highest epoch any live peer reports. `engine dht get <run>.progress` shows it.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "net/dht_node.h"

namespace engine::train {

struct PeerProgress {
  std::string peer;           // "@" + id hex (the subkey)
  int64_t epoch = 0;          // optimizer steps this peer has taken
  int64_t samples = 0;        // accumulated towards its next step (reset at each step)
  double samples_per_s = 0;
  double time = 0;            // DHT time (Unix s) of the report
  std::string addr;           // its Rpc address ("" in client mode)
  double bandwidth = 1.0;
  bool client_mode = false;
  uint64_t params_xxh3 = 0;   // checksum of its parameters after its last step
  double expiration = 0;
};

struct GlobalProgress {
  int64_t epoch = 0;              // max epoch reported
  int64_t samples_at_epoch = 0;   // Σ samples of the peers at that epoch
  double samples_per_s = 0;       // Σ over those peers
  int peers = 0;                  // live records
  int peers_at_epoch = 0;
  std::vector<PeerProgress> records;
  // Seconds until the target is reached at the current rate (0 when reached).
  double eta(int64_t target_batch) const;
};

// msgpack of one record, and its strict decoding (BadMessage on a malformed value).
std::string encode_progress(const PeerProgress& p);
PeerProgress decode_progress(const msgpack::object& o);

std::string progress_key(const std::string& run);

// Loop-thread only. publish: put our record (expiration now + ttl_s).
void publish_progress(net::DhtNode& dht, const std::string& run, const PeerProgress& mine, double ttl_s,
                      std::function<void(bool ok)> done);
// fetch: every live record of the run, summed up (a malformed record is skipped).
void fetch_progress(net::DhtNode& dht, const std::string& run, std::function<void(const GlobalProgress&)> done);

}  // namespace engine::train
