#include "net/dht_node.h"

#include <algorithm>
#include <chrono>

#include "net/dht_wire.h"

namespace engine::net {

// Runs fn from the loop soon, never inside the caller (put's refusals keep
// the "done runs later" contract of the accepted case).
static void defer(uv_loop_t* loop, std::function<void()> fn) {
  struct Deferred {
    uv_timer_t t;
    std::function<void()> fn;
  };
  auto* d = new Deferred{{}, std::move(fn)};
  uv_timer_init(loop, &d->t);
  d->t.data = d;
  uv_timer_start(&d->t, [](uv_timer_t* t) {
    auto* d = (Deferred*)t->data;
    auto fn = std::move(d->fn);
    uv_close((uv_handle_t*)t, [](uv_handle_t* h) { delete (Deferred*)h->data; });
    fn();
  }, 0, 0);
}

static double steady_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// ---- node ----------------------------------------------------------------------

DhtNode::DhtNode(Rpc& rpc, DhtOptions opts)
    : rpc_(rpc), opts_(std::move(opts)), table_(rpc.id(), opts_.k), storage_(opts_.storage), cache_(opts_.storage) {
  rpc_.handle("dht.ping", [this](Request& r) {
    saw(r.peer);
    r.respond(empty_map());
  });
  rpc_.handle("dht.find", [this](Request& r) { handle_find(r); });
  rpc_.handle("dht.store", [this](Request& r) { handle_store(r); });
  rpc_.handle("dht.peers", [this](Request& r) { handle_peers(r); });
}

DhtNode::~DhtNode() { stop(); }

void DhtNode::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (timer_) uv_close((uv_handle_t*)timer_, [](uv_handle_t* h) { delete (uv_timer_t*)h; });
  timer_ = nullptr;
}

bool DhtNode::banned(const std::string& addr) const {
  auto it = bans_.find(addr);
  return it != bans_.end() && it->second.until_ms > rpc_.now_ms();
}

// Every peer that talks to us or answers us is a candidate for the table.
void DhtNode::saw(const PeerInfo& p) {
  if (p.listen.empty() || stopped_) return;  // clients are not part of the DHT
  bans_.erase(p.listen);
  Contact stale;
  auto u = table_.seen(Contact{p.id, p.listen, 0}, rpc_.now_ms(), &stale);
  if (u == RoutingTable::Update::kAdded) {
    if (opts_.log) opts_.log("peer joined: " + p.id.short_hex() + " at " + p.listen);
    if (on_peer_joined) on_peer_joined(Contact{p.id, p.listen, 0});
  } else if (u == RoutingTable::Update::kBucketFull && !pinging_.count(stale.id)) {
    // Keep the old entry if it still answers; otherwise the newcomer replaces it.
    pinging_.insert(stale.id);
    rpc_.call(stale.addr, "dht.ping", empty_map(), opts_.rpc_timeout_ms, [this, stale](const Reply& r) {
      pinging_.erase(stale.id);
      if (r.ok() && r.peer.id == stale.id) table_.seen(stale, rpc_.now_ms());
      else failed(stale, r);
    });
  }
}

void DhtNode::failed(const Contact& c, const Reply& r) {
  bool unresponsive = r.code == ErrorCode::kUnavailable || r.code == ErrorCode::kDeadlineExceeded ||
                      r.code == ErrorCode::kRejected;
  if (unresponsive) {
    Ban& b = bans_[c.addr];
    b.failures++;
    uint64_t ms = std::min<uint64_t>((uint64_t)opts_.ban_base_ms << std::min(b.failures - 1, 20), opts_.ban_max_ms);
    b.until_ms = rpc_.now_ms() + ms;
  }
  Contact promoted;
  promoted.id = c.id;
  if (table_.remove(c.id, &promoted)) {
    std::string why = r.ok() ? "answered with another id" : r.message;
    if (opts_.log) opts_.log("peer left: " + c.id.short_hex() + " at " + c.addr + " (" + why + ")");
    if (on_peer_left) on_peer_left(c, why);
    if (promoted.id != c.id && opts_.log) opts_.log("peer joined: " + promoted.id.short_hex() + " at " + promoted.addr);
  }
}

// ---- handlers ------------------------------------------------------------------

void DhtNode::handle_find(Request& r) {
  saw(r.peer);
  NodeId target;
  if (!NodeId::from_bytes(as_bin(need_field(r.args, "key"), "key"), &target)) throw BadMessage("key: must be 20 bytes");
  bool want_value = false;
  if (auto* v = find_field(r.args, "value")) want_value = as_bool(*v, "value");
  std::optional<Record> rec;
  if (want_value) {
    rec = storage_.get(target, now());
    if (auto c = cache_.get(target, now())) {
      if (!rec) rec = Record{};
      merge_record(*rec, *c);
    }
  }
  std::vector<Contact> near = table_.nearest(target, opts_.k);
  Buf b;
  Packer pk(b);
  pk.pack_map(rec ? 2 : 1);
  pack_str(pk, "nodes");
  pk.pack_array((uint32_t)near.size());
  for (auto& c : near) {
    pk.pack_array(2);
    pack_bin(pk, c.id.bytes());
    pack_str(pk, c.addr);
  }
  if (rec) {
    pack_str(pk, "value");
    pack_record(pk, b, *rec);
  }
  r.respond(std::move(b.s));
}

void DhtNode::handle_store(Request& r) {
  saw(r.peer);
  auto& items = as_array(need_field(r.args, "items"), "items");
  if (items.via.array.size > opts_.max_store_batch) throw BadMessage("items: more than the batch limit");
  bool replica = false;
  if (auto* v = find_field(r.args, "replica")) replica = as_bool(*v, "replica");
  Buf b;
  Packer pk(b);
  pk.pack_map(1);
  pack_str(pk, "stored");
  pk.pack_array(items.via.array.size);
  double t = now();
  for (uint32_t i = 0; i < items.via.array.size; i++) {
    StoreItem it = unpack_store_item(items.via.array.ptr[i]);
    bool allowed = true;
    if (!replica && it.origin != r.peer.id) allowed = false;  // a first store comes from its writer
    if (it.subkey) {
      auto owner = subkey_owner(*it.subkey);
      if (owner && *owner != it.origin) allowed = false;  // replicas of owned subkeys name their owner
    }
    // The signature is checked only when the store rules would keep the item,
    // so the identical replicas that arrive every republish round cost no
    // verification.
    Storage::Result res = Storage::Result::kRejected;
    auto verify = [&](const std::optional<std::string>& sub, const ValueEntry& e) { return entry_ok(it.key, sub, e); };
    if (allowed) res = storage_.store(it.key, it.subkey, it.entry, t, verify);
    if (res == Storage::Result::kTooFar) rejected_++;
    res == Storage::Result::kStored ? pk.pack_true() : pk.pack_false();
  }
  r.respond(std::move(b.s));
}

void DhtNode::handle_peers(Request& r) {
  auto all = table_.all();
  uint64_t now_ms = rpc_.now_ms();
  Buf b;
  Packer pk(b);
  pk.pack_map(3);
  pack_str(pk, "id");
  pack_bin(pk, id().bytes());
  pack_str(pk, "address");
  pack_str(pk, rpc_.address());
  pack_str(pk, "nodes");
  pk.pack_array((uint32_t)all.size());
  for (auto& c : all) {
    pk.pack_array(3);
    pack_bin(pk, c.id.bytes());
    pack_str(pk, c.addr);
    pk.pack_uint64(now_ms - std::min(now_ms, c.last_seen_ms));
  }
  r.respond(std::move(b.s));
}

// ---- iterative lookup ------------------------------------------------------------

struct DhtNode::Lookup {
  enum State { kNew, kAsked, kAnswered, kFailed };
  struct Cand {
    Contact c;
    int depth;
    State state;
  };
  NodeId target;
  bool want_value = false;
  std::vector<Cand> cands;  // closest first
  std::set<NodeId> known;
  int inflight = 0;
  bool finished = false;
  bool found = false;
  Record value;
  LookupStats stats;
  double t0 = 0;
  std::function<void(Lookup&)> done;
  std::vector<Contact> closest_answered(size_t k) const {
    std::vector<Contact> out;
    for (auto& c : cands)
      if (c.state == kAnswered && out.size() < k) out.push_back(c.c);
    return out;
  }
  void add(const Contact& c, int depth) {
    if (!known.insert(c.id).second) return;
    auto pos = std::lower_bound(cands.begin(), cands.end(), c.id, [&](const Cand& x, const NodeId& id) {
      return closer(target, x.c.id, id);
    });
    cands.insert(pos, Cand{c, depth, kNew});
  }
  Cand* find(const NodeId& id) {
    for (auto& c : cands)
      if (c.c.id == id) return &c;
    return nullptr;
  }
};

void DhtNode::lookup(const NodeId& target, bool want_value, std::function<void(Lookup&)> done) {
  auto L = std::make_shared<Lookup>();
  L->target = target;
  L->want_value = want_value;
  L->done = std::move(done);
  L->t0 = steady_ms();
  L->known.insert(id());
  int bi = bucket_index(id(), target);
  if (bi >= 0) table_.touch(bi, rpc_.now_ms());
  for (auto& c : table_.nearest(target, opts_.k))
    if (!banned(c.addr)) L->add(c, 1);
  step(L);
}

void DhtNode::step(const std::shared_ptr<Lookup>& L) {
  if (L->finished) return;
  // Query the closest not-yet-asked candidates among the k closest that have
  // not failed, keeping alpha in flight; done when none is left to ask.
  size_t considered = 0;
  std::vector<Contact> to_ask;
  for (auto& c : L->cands) {
    if (c.state == Lookup::kFailed) continue;
    if (considered++ >= opts_.k) break;
    if (c.state == Lookup::kNew && L->inflight + (int)to_ask.size() < opts_.alpha) {
      c.state = Lookup::kAsked;
      to_ask.push_back(c.c);
    }
  }
  L->inflight += (int)to_ask.size();
  for (auto& c : to_ask) query(L, c);
  if (L->inflight == 0 && !L->finished) {
    L->finished = true;
    L->stats.ms = steady_ms() - L->t0;
    L->done(*L);
  }
}

void DhtNode::query(const std::shared_ptr<Lookup>& L, const Contact& c) {
  L->stats.messages++;
  Buf b;
  Packer pk(b);
  pk.pack_map(2);
  pack_str(pk, "key");
  pack_bin(pk, L->target.bytes());
  pack_str(pk, "value");
  L->want_value ? pk.pack_true() : pk.pack_false();
  rpc_.call(c.addr, "dht.find", std::move(b.s), opts_.rpc_timeout_ms, [this, L, c](const Reply& r) {
    L->inflight--;
    Lookup::Cand* cd = L->find(c.id);
    int depth = cd ? cd->depth : 1;
    bool ok = r.ok() && r.peer.id == c.id && r.result;
    if (ok) {
      try {
        auto& nodes = as_array(need_field(*r.result, "nodes"), "nodes");
        // A peer gets to name at most k others; more is ignored.
        for (uint32_t i = 0; i < nodes.via.array.size && i < opts_.k; i++) {
          auto& n = as_array(nodes.via.array.ptr[i], "node");
          if (n.via.array.size != 2) throw BadMessage("node: expected [id, addr]");
          Contact nc;
          if (!NodeId::from_bytes(as_bin(n.via.array.ptr[0], "node id"), &nc.id)) throw BadMessage("node id");
          nc.addr = std::string(as_str(n.via.array.ptr[1], "node addr"));
          if (nc.addr.empty() || nc.addr.size() > 64 || banned(nc.addr)) continue;
          if (L->cands.size() < 16 * opts_.k) L->add(nc, depth + 1);
        }
        if (L->want_value) {
          if (auto* v = find_field(*r.result, "value")) {
            Record rec = unpack_record(*v, opts_.storage.max_subkeys);
            drop_unacceptable(rec, now());
            // Verified only when an entry would win the merge: the copies
            // other holders send of the same entry are refused as not newer.
            merge_record(L->value, rec, [this, &L](const std::optional<std::string>& sub, const ValueEntry& e) {
              return entry_ok(L->target, sub, e);
            });
            if (!L->found && !L->value.empty()) {
              L->stats.value_hops = depth;
              L->found = true;
            }
          }
        }
      } catch (const BadMessage&) {
        ok = false;
      }
    }
    cd = L->find(c.id);  // the vector may have grown
    if (ok) {
      if (cd) cd->state = Lookup::kAnswered;
      L->stats.hops = std::max(L->stats.hops, depth);
      saw(r.peer);
    } else {
      if (cd) cd->state = Lookup::kFailed;
      L->stats.failures++;
      failed(c, r);
    }
    step(L);
  });
}

void DhtNode::find_nodes(const NodeId& target,
                         std::function<void(const std::vector<Contact>&, const LookupStats&)> done) {
  lookup(target, false, [this, done](Lookup& L) { done(L.closest_answered(opts_.k), L.stats); });
}

void DhtNode::bootstrap(const std::vector<std::string>& peers, std::function<void(size_t, const std::string&)> done) {
  if (peers.empty()) {
    done(table_.size(), "");
    return;
  }
  auto pending = std::make_shared<size_t>(peers.size());
  auto errors = std::make_shared<std::string>();
  for (auto& addr : peers) {
    rpc_.call(addr, "dht.ping", empty_map(), opts_.rpc_timeout_ms, [this, addr, pending, errors, done](const Reply& r) {
      if (r.ok()) saw(r.peer);
      else *errors += (errors->empty() ? "" : "; ") + addr + ": " + r.message;
      if (--*pending) return;
      if (table_.size() == 0) {
        done(0, "no initial peer answered (" + *errors + ")");
        return;
      }
      find_nodes(id(), [this, done](const std::vector<Contact>&, const LookupStats&) { done(table_.size(), ""); });
    });
  }
}

// ---- put / get -------------------------------------------------------------------

bool DhtNode::entry_ok(const NodeId& key, const std::optional<std::string>& subkey, const ValueEntry& e) {
  if (check_record(key, subkey, e.value, e.expiration, e.pk, e.sig) == RecordCheck::kOk) return true;
  rejected_++;
  return false;
}

// A reader's version of the storage's range checks, for lookup answers.
void DhtNode::drop_unacceptable(Record& r, double t) {
  auto bad = [&](const ValueEntry& e) {
    if (!(e.expiration > t)) return true;  // expired, or NaN
    if (e.expiration <= t + opts_.storage.max_ahead_s) return false;
    rejected_++;
    return true;
  };
  if (!r.is_dict) {
    if (r.plain.expiration != 0 && bad(r.plain)) r.plain = {};
    return;
  }
  for (auto it = r.dict.begin(); it != r.dict.end();) it = bad(it->second) ? r.dict.erase(it) : std::next(it);
}

void DhtNode::send_store(const Contact& to, const std::vector<StoreItem>& items, bool replica,
                         std::function<void(int)> done) {
  rpc_.call(to.addr, "dht.store", encode_store_args(items, replica), opts_.rpc_timeout_ms,
            [this, to, done](const Reply& r) {
    int accepted = 0;
    if (r.ok() && r.peer.id == to.id) {
      saw(r.peer);
      try {
        auto& st = as_array(need_field(*r.result, "stored"), "stored");
        for (uint32_t i = 0; i < st.via.array.size; i++) accepted += as_bool(st.via.array.ptr[i], "stored");
      } catch (const BadMessage&) {
      }
    } else if (!r.ok()) {
      failed(to, r);
    }
    if (done) done(accepted);
  });
}

void DhtNode::put(const std::string& key, const std::optional<std::string>& subkey, std::string value,
                  double expiration, std::function<void(int, int, const LookupStats&)> done) {
  NodeId kid = NodeId::from_key(key);
  auto refuse = [&](const std::string& why) {
    if (opts_.log) opts_.log("put " + key + ": " + why);
    defer(rpc_.loop(), [done] { done(0, 0, LookupStats{}); });
  };
  auto owner = subkey ? subkey_owner(*subkey) : std::nullopt;
  if (owner && *owner != id()) return refuse("subkey " + *subkey + " belongs to another peer");
  if (!(expiration <= now() + kMaxTtlS)) return refuse("expiration more than the maximum TTL ahead");
  ValueEntry entry;
  entry.expiration = expiration;
  try {
    // Signed and sent as msgpack-c's encoding, the one every node re-encodes to.
    auto oh = unpack_untrusted(value.data(), value.size());
    entry.value = pack_object(oh.get());
  } catch (const BadMessage& e) {
    return refuse(std::string("value is not one msgpack object: ") + e.what());
  }
  if (owner) {
    entry.pk.assign((const char*)rpc_.identity().public_key().data(), kPublicKeyBytes);
    entry.sig = sign_record(rpc_.identity(), kid, *subkey, entry.value, expiration);
  }
  if (expiration > now()) own_[{key, subkey.value_or("")}] = OwnValue{key, subkey, value, expiration};
  lookup(kid, false, [this, kid, subkey, entry, done](Lookup& L) {
    std::vector<Contact> targets = L.closest_answered(opts_.k);
    LookupStats stats = L.stats;
    int local = 0;
    // A listening node is a holder too when it is among the k closest.
    if (!rpc_.address().empty() && (targets.size() < opts_.k || closer(kid, id(), targets.back().id)))
      local = storage_.store(kid, subkey, entry, now()) == Storage::Result::kStored;
    if (targets.empty()) {
      done(local, local, stats);
      return;
    }
    auto left = std::make_shared<size_t>(targets.size());
    auto stored = std::make_shared<int>(local);
    int tried = (int)targets.size() + local;
    std::vector<StoreItem> items{StoreItem{kid, subkey, entry, id()}};
    for (auto& t : targets)
      send_store(t, items, false, [left, stored, tried, stats, done](int accepted) {
        *stored += accepted;
        if (--*left == 0) done(*stored, tried, stats);
      });
  });
}

void DhtNode::get(const std::string& key, std::function<void(const GetResult&)> done) {
  NodeId kid = NodeId::from_key(key);
  lookup(kid, true, [this, kid, done](Lookup& L) {
    GetResult res;
    res.stats = L.stats;
    res.found = L.found;
    res.record = L.value;
    double t = now();
    if (L.found) {
      // Cache what the network returned, so we can answer for it too.
      // (Already verified; signatures are kept so we can pass them on.)
      if (!L.value.is_dict) cache_.store(kid, std::nullopt, L.value.plain, t);
      for (auto& [sub, e] : L.value.dict) cache_.store(kid, sub, e, t);
    }
    for (Storage* s : {&storage_, &cache_})
      if (auto local = s->get(kid, t)) {
        merge_record(res.record, *local);
        res.found = true;
      }
    done(res);
  });
}

// ---- upkeep ----------------------------------------------------------------------

void DhtNode::start_maintenance() {
  if (timer_ || stopped_) return;
  timer_ = new uv_timer_t;
  uv_timer_init(rpc_.loop(), timer_);
  timer_->data = this;
  uint64_t now_ms = rpc_.now_ms();
  next_refresh_ = now_ms + opts_.refresh_interval_ms;
  next_republish_ = now_ms + opts_.republish_interval_ms;
  uint64_t period = std::max<uint64_t>(50, std::min(opts_.refresh_interval_ms, opts_.republish_interval_ms) / 4);
  uv_timer_start(timer_, [](uv_timer_t* t) { ((DhtNode*)t->data)->tick(); }, period, period);
}

void DhtNode::tick() {
  if (stopped_) return;
  uint64_t now_ms = rpc_.now_ms();
  if (now_ms >= next_refresh_) {
    next_refresh_ = now_ms + opts_.refresh_interval_ms;
    refresh();
  }
  if (now_ms >= next_republish_) {
    next_republish_ = now_ms + opts_.republish_interval_ms;
    republish();
  }
}

void DhtNode::refresh() {
  // Our own neighbourhood, plus every bucket no lookup has touched lately.
  find_nodes(id(), [](const std::vector<Contact>&, const LookupStats&) {});
  uint64_t now_ms = rpc_.now_ms();
  int launched = 0;
  for (int i = NodeId::kBits - 1; i >= 0 && launched < 8; i--) {
    if (table_.bucket_size(i) == 0 || now_ms - table_.touched_ms(i) < opts_.refresh_interval_ms) continue;
    find_nodes(random_id_in_bucket(id(), i), [](const std::vector<Contact>&, const LookupStats&) {});
    launched++;
  }
  storage_.purge(now());
  cache_.purge(now());
}

void DhtNode::republish() {
  double t = now();
  // Our own values: stored again on whichever nodes are closest now.
  for (auto it = own_.begin(); it != own_.end();) {
    if (it->second.expiration <= t) {
      it = own_.erase(it);
      continue;
    }
    auto& v = it->second;
    put(v.key, v.subkey, v.value, v.expiration, [](int, int, const LookupStats&) {});
    ++it;
  }
  // Replicas we hold: pushed to the k closest nodes we know for each key, so
  // values outlive their writer and move as nodes come and go.
  std::map<NodeId, std::pair<Contact, std::vector<StoreItem>>> batches;
  size_t n = 0;
  for (auto& [key, rec] : storage_.items(t)) {
    std::vector<StoreItem> items;
    if (!rec.is_dict) items.push_back({key, std::nullopt, rec.plain, id()});
    for (auto& [sub, e] : rec.dict) {
      NodeId origin = subkey_owner(sub).value_or(id());
      items.push_back({key, sub, e, origin});  // the owner's signature travels unchanged
    }
    for (auto& c : table_.nearest(key, opts_.k)) {
      if (banned(c.addr)) continue;
      auto& batch = batches[c.id];
      batch.first = c;
      batch.second.insert(batch.second.end(), items.begin(), items.end());
    }
    n++;
  }
  for (auto& [nid, batch] : batches)
    for (size_t i = 0; i < batch.second.size(); i += opts_.max_store_batch) {
      std::vector<StoreItem> part(batch.second.begin() + i,
                                  batch.second.begin() + std::min(batch.second.size(), i + opts_.max_store_batch));
      send_store(batch.first, part, true, {});
    }
  if (opts_.log && (n || !own_.empty()))
    opts_.log("republished " + std::to_string(own_.size()) + " own and " + std::to_string(n) + " held keys to " +
              std::to_string(batches.size()) + " peers");
}

}  // namespace engine::net
