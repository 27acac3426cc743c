#include "net/swarm_index.h"

#include "net/msg.h"
#include "net/server_info.h"

namespace engine::net {

namespace {

constexpr size_t kMaxNameBytes = 256;

template <class Entry, class Decode>
std::vector<Entry> entries(const Record& rec, double now, Decode decode) {
  std::vector<Entry> out;
  if (!rec.is_dict) return out;
  for (auto& [sub, e] : rec.dict) {  // a std::map: name order, so the cap is deterministic
    if (out.size() >= kMaxIndexEntries) break;
    if (e.expiration <= now || sub.empty() || sub.size() > kMaxNameBytes || sub[0] == '@') continue;
    try {
      auto oh = unpack_untrusted(e.value.data(), e.value.size());
      out.push_back(decode(sub, oh.get()));
    } catch (const BadMessage&) {
      // Someone else's malformed entry: skip it, keep the rest.
    }
  }
  return out;
}

}  // namespace

std::string encode_model_entry(const ModelEntry& m) {
  Buf b;
  Packer pk(b);
  pk.pack_map(2);
  pack_str(pk, "blocks"), pk.pack_int64(m.blocks);
  pack_str(pk, "n_embd"), pk.pack_int64(m.n_embd);
  return b.s;
}

ModelEntry decode_model_entry(const std::string& name, const msgpack::object& o) {
  as_map(o, "model entry");
  ModelEntry m;
  m.name = name;
  m.blocks = as_int(need_field(o, "blocks"), "blocks");
  if (m.blocks < 1 || m.blocks > (1 << 20)) throw BadMessage("model entry: blocks out of range");
  if (auto* v = find_field(o, "n_embd")) m.n_embd = as_int(*v, "n_embd");
  if (m.n_embd < 0) throw BadMessage("model entry: negative n_embd");
  return m;
}

std::string encode_run_entry(const RunEntry& r) {
  Buf b;
  Packer pk(b);
  pk.pack_map(2);
  pack_str(pk, "target_batch"), pk.pack_int64(r.target_batch);
  pack_str(pk, "parent"), pack_str(pk, r.parent);
  return b.s;
}

RunEntry decode_run_entry(const std::string& name, const msgpack::object& o) {
  as_map(o, "run entry");
  RunEntry r;
  r.name = name;
  r.target_batch = as_int(need_field(o, "target_batch"), "target_batch");
  if (r.target_batch < 0) throw BadMessage("run entry: negative target_batch");
  if (auto* v = find_field(o, "parent")) r.parent = std::string(as_str(*v, "parent"));
  if (r.parent.size() > kMaxNameBytes) throw BadMessage("run entry: parent too long");
  return r;
}

std::vector<ModelEntry> model_entries(const Record& rec, double now) {
  return entries<ModelEntry>(rec, now, decode_model_entry);
}

std::vector<RunEntry> run_entries(const Record& rec, double now) { return entries<RunEntry>(rec, now, decode_run_entry); }

void publish_model_entry(DhtNode& dht, const ModelEntry& m, double expiration, std::function<void(bool ok)> done) {
  dht.put(kModelRegistryKey, m.name, encode_model_entry(m), expiration,
          [done = std::move(done)](int stored, int, const LookupStats&) { if (done) done(stored > 0); });
}

void publish_run_entry(DhtNode& dht, const RunEntry& r, double expiration, std::function<void(bool ok)> done) {
  dht.put(kRunRegistryKey, r.name, encode_run_entry(r), expiration,
          [done = std::move(done)](int stored, int, const LookupStats&) { if (done) done(stored > 0); });
}

void fetch_models(DhtNode& dht, std::function<void(std::vector<ModelEntry>)> done) {
  DhtNode* node = &dht;
  dht.get(kModelRegistryKey, [node, done = std::move(done)](const GetResult& r) {
    done(r.found ? model_entries(r.record, node->now()) : std::vector<ModelEntry>{});
  });
}

void fetch_runs(DhtNode& dht, std::function<void(std::vector<RunEntry>)> done) {
  DhtNode* node = &dht;
  dht.get(kRunRegistryKey, [node, done = std::move(done)](const GetResult& r) {
    done(r.found ? run_entries(r.record, node->now()) : std::vector<RunEntry>{});
  });
}

}  // namespace engine::net
