#include "net/dht_wire.h"

namespace engine::net {

namespace {
// A signed entry's two trailing fields; only ever both or neither.
void pack_signature(Packer& pk, const ValueEntry& e) {
  pack_bin(pk, e.pk);
  pack_bin(pk, e.sig);
}
void unpack_signature(const msgpack::object* fields, ValueEntry& e) {
  e.pk = std::string(as_bin(fields[0], "public key"));
  e.sig = std::string(as_bin(fields[1], "signature"));
  if (e.pk.size() != kPublicKeyBytes) throw BadMessage("public key: must be 32 bytes");
  if (e.sig.size() != kSignatureBytes) throw BadMessage("signature: must be 64 bytes");
}
bool is_signed(const ValueEntry& e) { return !e.sig.empty() || !e.pk.empty(); }
}  // namespace

void pack_record(Packer& pk, Buf& b, const Record& r) {
  if (!r.is_dict) {
    pk.pack_map(2);
    pack_str(pk, "exp");
    pk.pack_double(r.plain.expiration);
    pack_str(pk, "value");
    b.write(r.plain.value.data(), r.plain.value.size());  // already one msgpack object
    return;
  }
  pk.pack_map(1);
  pack_str(pk, "dict");
  pk.pack_array((uint32_t)r.dict.size());
  for (auto& [sub, e] : r.dict) {
    pk.pack_array(is_signed(e) ? 5 : 3);
    pack_bin(pk, sub);
    b.write(e.value.data(), e.value.size());
    pk.pack_double(e.expiration);
    if (is_signed(e)) pack_signature(pk, e);
  }
}

Record unpack_record(const msgpack::object& o, size_t max_subkeys) {
  as_map(o, "record");
  Record r;
  if (const msgpack::object* d = find_field(o, "dict")) {
    auto& arr = as_array(*d, "record dict");
    if (arr.via.array.size > max_subkeys) throw BadMessage("record dict: too many subkeys");
    r.is_dict = true;
    for (uint32_t i = 0; i < arr.via.array.size; i++) {
      auto& it = as_array(arr.via.array.ptr[i], "dict entry");
      uint32_t n = it.via.array.size;
      if (n != 3 && n != 5) throw BadMessage("dict entry: expected [subkey, value, exp(, pk, sig)]");
      std::string sub(as_bytes(it.via.array.ptr[0], "subkey"));
      ValueEntry e{pack_object(it.via.array.ptr[1]), as_double(it.via.array.ptr[2], "exp"), {}, {}};
      if (n == 5) unpack_signature(it.via.array.ptr + 3, e);
      auto old = r.dict.find(sub);
      if (old == r.dict.end() || old->second.expiration < e.expiration) r.dict[sub] = std::move(e);
    }
    return r;
  }
  r.plain.expiration = as_double(need_field(o, "exp"), "exp");
  r.plain.value = pack_object(need_field(o, "value"));
  return r;
}

void pack_store_item(Packer& pk, Buf& b, const StoreItem& it) {
  pk.pack_array(is_signed(it.entry) ? 7 : 5);
  pack_bin(pk, it.key.bytes());
  if (it.subkey) pack_bin(pk, *it.subkey);
  else pk.pack_nil();
  b.write(it.entry.value.data(), it.entry.value.size());
  pk.pack_double(it.entry.expiration);
  pack_bin(pk, it.origin.bytes());
  if (is_signed(it.entry)) pack_signature(pk, it.entry);
}

std::string encode_store_args(const std::vector<StoreItem>& items, bool replica) {
  Buf b;
  Packer pk(b);
  pk.pack_map(2);
  pack_str(pk, "items");
  pk.pack_array((uint32_t)items.size());
  for (auto& it : items) pack_store_item(pk, b, it);
  pack_str(pk, "replica");
  replica ? pk.pack_true() : pk.pack_false();
  return std::move(b.s);
}

StoreItem unpack_store_item(const msgpack::object& o) {
  auto& a = as_array(o, "item");
  uint32_t n = a.via.array.size;
  if (n != 5 && n != 7) throw BadMessage("item: expected [key, subkey, value, exp, origin(, pk, sig)]");
  StoreItem it;
  if (!NodeId::from_bytes(as_bin(a.via.array.ptr[0], "key"), &it.key)) throw BadMessage("key: must be 20 bytes");
  if (a.via.array.ptr[1].type != msgpack::type::NIL) it.subkey = std::string(as_bytes(a.via.array.ptr[1], "subkey"));
  // Re-encoded, so the bytes we store, sign-check and pass on are msgpack-c's
  // (minimal) encoding of the value, whatever encoding the sender chose.
  it.entry.value = pack_object(a.via.array.ptr[2]);
  it.entry.expiration = as_double(a.via.array.ptr[3], "exp");
  if (!NodeId::from_bytes(as_bin(a.via.array.ptr[4], "origin"), &it.origin))
    throw BadMessage("origin: must be 20 bytes");
  if (n == 7) unpack_signature(a.via.array.ptr + 5, it.entry);
  return it;
}

}  // namespace engine::net
