// Progress records in the DHT: encoding, strict decoding (records come from
// any peer of the swarm), and the collaboration's sum of them. Also the run's
// config, kept next to the progress under "<run>.config".
#include "train/progress_tracker.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>

#include "net/msg.h"

namespace engine::train {

using net::BadMessage;

namespace {

constexpr size_t kMaxAddrBytes = 256;

// (Built with += : GCC 12 warns falsely about "literal" + std::string.)
std::string own_subkey(const net::DhtNode& dht) {
  std::string s = "@";
  s += dht.id().hex();
  return s;
}

double finite_at_least(const msgpack::object& o, std::string_view what, double lo) {
  double v = net::as_double(o, what);
  if (!std::isfinite(v) || v < lo) throw BadMessage(std::string(what) + " out of range");
  return v;
}

int64_t non_negative(const msgpack::object& o, std::string_view what) {
  int64_t v = net::as_int(o, what);
  if (v < 0) throw BadMessage(std::string(what) + " is negative");
  return v;
}

// The entries of a dictionary record written by their owners ("@<id hex>"), unexpired.
std::vector<std::pair<std::string, const net::ValueEntry*>> owned_entries(const net::Record& rec, double now) {
  std::vector<std::pair<std::string, const net::ValueEntry*>> out;
  if (!rec.is_dict) return out;
  for (auto& [sub, e] : rec.dict)
    if (net::subkey_owner(sub) && e.expiration > now) out.push_back({sub, &e});
  return out;
}

}  // namespace

// ---- one record ---------------------------------------------------------------------

std::string encode_progress(const PeerProgress& p) {
  net::Buf b;
  net::Packer pk(b);
  const bool has_loss = std::isfinite(p.loss);
  pk.pack_map(has_loss ? 9 : 8);
  net::pack_str(pk, "epoch");
  pk.pack_int64(p.epoch);
  net::pack_str(pk, "samples");
  pk.pack_int64(p.samples);
  net::pack_str(pk, "sps");
  pk.pack_double(p.samples_per_s);
  net::pack_str(pk, "time");
  pk.pack_double(p.time);
  net::pack_str(pk, "addr");
  net::pack_str(pk, p.addr);
  net::pack_str(pk, "bandwidth");
  pk.pack_double(p.bandwidth);
  net::pack_str(pk, "client");
  p.client_mode ? pk.pack_true() : pk.pack_false();
  net::pack_str(pk, "params_xxh3");
  pk.pack_uint64(p.params_xxh3);
  if (has_loss) {
    net::pack_str(pk, "loss");
    pk.pack_double(p.loss);
  }
  return b.s;
}

PeerProgress decode_progress(const msgpack::object& o) {
  net::as_map(o, "progress record");
  PeerProgress p;
  p.epoch = non_negative(net::need_field(o, "epoch"), "epoch");
  p.samples = non_negative(net::need_field(o, "samples"), "samples");
  p.samples_per_s = finite_at_least(net::need_field(o, "sps"), "sps", 0.0);
  p.time = finite_at_least(net::need_field(o, "time"), "time", 0.0);
  std::string_view addr = net::as_str(net::need_field(o, "addr"), "addr");
  if (addr.size() > kMaxAddrBytes) throw BadMessage("addr too long");
  p.addr = std::string(addr);
  p.bandwidth = finite_at_least(net::need_field(o, "bandwidth"), "bandwidth", 0.0);
  p.client_mode = net::as_bool(net::need_field(o, "client"), "client");
  p.params_xxh3 = net::as_uint(net::need_field(o, "params_xxh3"), "params_xxh3");
  if (auto* v = net::find_field(o, "loss")) p.loss = finite_at_least(*v, "loss", 0.0);
  return p;
}

std::string progress_key(const std::string& run) { return run + ".progress"; }

// ---- the collaboration's progress ----------------------------------------------------

double GlobalProgress::eta(int64_t target_batch) const {
  if (samples_at_epoch >= target_batch) return 0;
  if (samples_per_s <= 0) return std::numeric_limits<double>::infinity();
  return (double)(target_batch - samples_at_epoch) / samples_per_s;
}

// Sums the records: the global epoch is the highest one reported, and only the
// peers at it count towards its batch (the others are catching up).
static GlobalProgress summarize(std::vector<PeerProgress> records) {
  GlobalProgress g;
  g.peers = (int)records.size();
  for (auto& r : records) g.epoch = std::max(g.epoch, r.epoch);
  for (auto& r : records) {
    if (r.epoch != g.epoch) continue;
    g.peers_at_epoch++;
    g.samples_at_epoch += r.samples;
    g.samples_per_s += r.samples_per_s;
  }
  g.records = std::move(records);
  return g;
}

// The DHT keeps the entry with the later expiration and refuses an equal one, and
// its clock counts milliseconds: two reports within one millisecond would leave the
// older standing. So each node's expirations for a key strictly increase. Keyed by
// the node's id, not its address: a node made later at a destroyed node's address
// would inherit that node's last expiration (in the tests, a long-lived record's),
// and its short-lived record would then outlive its ttl.
double next_expiration(const net::DhtNode& dht, const std::string& key, double wanted) {
  static std::mutex mu;
  static std::map<std::pair<net::NodeId, std::string>, double> last;
  std::lock_guard<std::mutex> lock(mu);
  double& prev = last[{dht.id(), key}];
  prev = std::max(wanted, prev + 0.001);
  return prev;
}

void publish_progress(net::DhtNode& dht, const std::string& run, const PeerProgress& mine, double ttl_s,
                      std::function<void(bool ok)> done) {
  const std::string key = progress_key(run);
  dht.put(key, own_subkey(dht), encode_progress(mine), next_expiration(dht, key, dht.now() + ttl_s),
          [done = std::move(done)](int stored, int, const net::LookupStats&) { done(stored > 0); });
}

void fetch_progress(net::DhtNode& dht, const std::string& run, std::function<void(const GlobalProgress&)> done) {
  net::DhtNode* node = &dht;
  dht.get(progress_key(run), [node, done = std::move(done)](const net::GetResult& r) {
    std::vector<PeerProgress> records;
    for (auto& [sub, e] : owned_entries(r.record, node->now())) {
      try {
        auto oh = net::unpack_untrusted(e->value.data(), e->value.size());
        PeerProgress p = decode_progress(oh.get());
        p.peer = sub;
        p.expiration = e->expiration;
        records.push_back(std::move(p));
      } catch (const BadMessage&) {
        // A malformed record (a buggy or hostile peer) is left out of the sum.
      }
    }
    done(summarize(std::move(records)));
  });
}

// ---- the run's config -------------------------------------------------------------------
//
// Why every peer publishes the config under its own subkey instead of one plain
// value: the DHT's store rule is "newest expiration wins", so a plain value
// belongs to whoever writes last, not first — any peer (buggy or hostile) could
// replace the run's config, and it would vanish when the peer that wrote it stops
// republishing. Owner-only subkeys cannot be overwritten by others, stay alive as
// long as any peer of the run does, and a joiner sees every peer's copy: it takes
// the config most peers agree on, compares it with its own, and refuses to join
// on a mismatch. Only a peer that agreed publishes, so the copies stay identical
// and a dissenting one is visible as a minority.

std::string run_config_key(const std::string& run) { return run + ".config"; }

void publish_run_config(net::DhtNode& dht, const std::string& run, const std::string& config_msgpack, double ttl_s,
                        std::function<void(bool ok)> done) {
  auto oh = net::unpack_untrusted(config_msgpack.data(), config_msgpack.size());
  if (oh.get().type != msgpack::type::MAP) throw Error("run config must be a msgpack map");
  dht.put(run_config_key(run), own_subkey(dht), config_msgpack, dht.now() + ttl_s,
          [done = std::move(done)](int stored, int, const net::LookupStats&) { done(stored > 0); });
}

void fetch_run_config(net::DhtNode& dht, const std::string& run,
                      std::function<void(const std::optional<std::string>&)> done) {
  net::DhtNode* node = &dht;
  dht.get(run_config_key(run), [node, done = std::move(done)](const net::GetResult& r) {
    struct Votes {
      int n = 0;
      std::string first_peer;  // lowest subkey (peer id) holding this config
    };
    std::map<std::string, Votes> votes;  // canonical encoding -> votes
    for (auto& [sub, e] : owned_entries(r.record, node->now())) {
      try {
        auto oh = net::unpack_untrusted(e->value.data(), e->value.size());
        if (oh.get().type != msgpack::type::MAP) continue;
        Votes& v = votes[net::pack_object(oh.get())];
        if (v.n++ == 0 || sub < v.first_peer) v.first_peer = sub;
      } catch (const BadMessage&) {
      }
    }
    // Most copies win; a tie (two founders that raced) goes to the lowest peer
    // id, a rule every reader applies the same way.
    const std::pair<const std::string, Votes>* best = nullptr;
    for (auto& kv : votes)
      if (!best || kv.second.n > best->second.n ||
          (kv.second.n == best->second.n && kv.second.first_peer < best->second.first_peer))
        best = &kv;
    done(best ? std::optional<std::string>(best->first) : std::nullopt);
  });
}

bool same_run_config(const std::string& a_msgpack, const std::string& b_msgpack) {
  try {
    auto a = net::unpack_untrusted(a_msgpack.data(), a_msgpack.size());
    auto b = net::unpack_untrusted(b_msgpack.data(), b_msgpack.size());
    return net::pack_object(a.get()) == net::pack_object(b.get());
  } catch (const BadMessage&) {
    return false;
  }
}

}  // namespace engine::train
