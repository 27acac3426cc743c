// DeDLOC's progress tracker: each peer of a run publishes its progress under the
// DHT key "<run>.progress", subkey "@<peer id hex>" (only that peer may write it):
//   {epoch, samples, sps, time, addr, bandwidth, client, params_xxh3[, loss]}
// re-published every `period_s` with expiration time + ttl_s, so a peer that
// vanishes drops out of the sum by itself. The collaboration's progress at the
// current epoch is the sum of the samples reported for it; the global epoch is the
// highest epoch any live peer reports. `engine dht get <run>.progress` shows it.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
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
  // Optional: its mean training loss over the epoch so far (NaN: not reported, e.g. a
  // SWARM stage peer, which never sees the loss). Older peers neither send nor read it.
  double loss = std::numeric_limits<double>::quiet_NaN();
  double expiration = 0;
};

struct GlobalProgress {
  int64_t epoch = 0;              // max epoch reported
  int64_t samples_at_epoch = 0;   // Σ samples of the peers at that epoch
  double samples_per_s = 0;       // Σ over those peers
  int peers = 0;                  // live records
  int peers_at_epoch = 0;
  std::vector<PeerProgress> records;
  // Seconds until the target is reached at the current rate (0 when reached,
  // infinity when no peer at the epoch reports a rate). Uses the reported sums
  // as they are; records carry `time` for callers that extrapolate.
  double eta(int64_t target_batch) const;
};

// msgpack of one record, and its strict decoding (BadMessage on a malformed value:
// missing or mistyped fields, negative counts, non-finite or negative rates,
// addr over 256 bytes). `peer` and `expiration` come from the DHT entry, not the value.
std::string encode_progress(const PeerProgress& p);
PeerProgress decode_progress(const msgpack::object& o);

std::string progress_key(const std::string& run);

// Loop-thread only. publish: put our record (expiration now + ttl_s).
void publish_progress(net::DhtNode& dht, const std::string& run, const PeerProgress& mine, double ttl_s,
                      std::function<void(bool ok)> done);
// fetch: every live record of the run, summed up (a malformed record, one under a
// subkey that is not "@<40 hex>", or an expired one is skipped).
void fetch_progress(net::DhtNode& dht, const std::string& run, std::function<void(const GlobalProgress&)> done);

// The run's model config under "<run>.config": an opaque msgpack map (<= 64 KiB,
// the DHT's value limit) that every peer of the run publishes under its own
// subkey "@<id hex>" (see progress_tracker.cpp for why not one plain value).
// A joiner fetches it first: nullopt means no peer runs it yet (become its
// first peer); otherwise the config most peers publish (ties: the lowest peer
// id), re-encoded, which it compares with its own (same_run_config) and refuses
// to join on a mismatch; only then does it publish its copy (and re-publish it
// with its progress, e.g. with the same ttl). Loop-thread only.
std::string run_config_key(const std::string& run);
// Error if config_msgpack is not a well-formed msgpack map.
void publish_run_config(net::DhtNode& dht, const std::string& run, const std::string& config_msgpack, double ttl_s,
                        std::function<void(bool ok)> done);
void fetch_run_config(net::DhtNode& dht, const std::string& run,
                      std::function<void(const std::optional<std::string>&)> done);
// Equal as msgpack values (both re-encoded); false if either is malformed.
bool same_run_config(const std::string& a_msgpack, const std::string& b_msgpack);

}  // namespace engine::train
