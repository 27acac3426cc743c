#include "net/envelope.h"

#include "net/msg.h"

namespace engine::net {

static const char* kTypeNames[] = {"hello", "bye", "req", "res", "err", "msg", "part", "rpart", "cancel", "auth"};

const char* msg_type_name(MsgType t) { return kTypeNames[(int)t]; }

const char* error_code_name(ErrorCode c) {
  switch (c) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kBadRequest: return "bad request";
    case ErrorCode::kUnknownMethod: return "unknown method";
    case ErrorCode::kDeadlineExceeded: return "deadline exceeded";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kOverloaded: return "overloaded";
    case ErrorCode::kInternal: return "internal error";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kProtocol: return "protocol error";
    case ErrorCode::kRejected: return "rejected";
    case ErrorCode::kNotFound: return "not found";
  }
  return "unknown error";
}

static void head(Packer& pk, uint32_t fields, MsgType t) {
  pk.pack_map(fields);
  pack_str(pk, "type");
  pack_str(pk, msg_type_name(t));
}
static void key_uint(Packer& pk, std::string_view k, uint64_t v) {
  pack_str(pk, k);
  pk.pack_uint64(v);
}

std::string encode_hello(const Hello& h) {
  Buf b;
  Packer pk(b);
  head(pk, 8, MsgType::kHello);
  pack_str(pk, "peer");
  pack_bin(pk, h.peer_id);
  key_uint(pk, "version", h.version);
  pack_str(pk, "swarm");
  pack_str(pk, h.swarm);
  pack_str(pk, "listen");
  pack_str(pk, h.listen);
  pack_str(pk, "time");
  pk.pack_int64(h.time_ms);
  pack_str(pk, "key");
  pack_bin(pk, h.key);
  pack_str(pk, "nonce");
  pack_bin(pk, h.nonce);
  return std::move(b.s);
}

std::string encode_auth(std::string_view signature) {
  Buf b;
  Packer pk(b);
  head(pk, 2, MsgType::kAuth);
  pack_str(pk, "sig");
  pack_bin(pk, signature);
  return std::move(b.s);
}

std::string encode_bye(ErrorCode code, std::string_view message) {
  Buf b;
  Packer pk(b);
  head(pk, 3, MsgType::kBye);
  key_uint(pk, "code", (uint64_t)code);
  pack_str(pk, "message");
  pack_str(pk, message.substr(0, kMaxMessage));
  return std::move(b.s);
}

std::string encode_error(uint64_t id, ErrorCode code, std::string_view message) {
  Buf b;
  Packer pk(b);
  head(pk, 4, MsgType::kError);
  key_uint(pk, "id", id);
  key_uint(pk, "code", (uint64_t)code);
  pack_str(pk, "message");
  pack_str(pk, message.substr(0, kMaxMessage));
  return std::move(b.s);
}

std::string encode_cancel(uint64_t id) {
  Buf b;
  Packer pk(b);
  head(pk, 2, MsgType::kCancel);
  key_uint(pk, "id", id);
  return std::move(b.s);
}

std::string request_prefix(uint64_t id, std::string_view method, uint32_t deadline_ms) {
  Buf b;
  Packer pk(b);
  head(pk, 5, MsgType::kRequest);
  key_uint(pk, "id", id);
  pack_str(pk, "method");
  pack_str(pk, method);
  key_uint(pk, "deadline", deadline_ms);
  pack_str(pk, "body");
  return std::move(b.s);
}

std::string response_prefix(uint64_t id) {
  Buf b;
  Packer pk(b);
  head(pk, 3, MsgType::kResponse);
  key_uint(pk, "id", id);
  pack_str(pk, "body");
  return std::move(b.s);
}

std::string notify_prefix(std::string_view method) {
  Buf b;
  Packer pk(b);
  head(pk, 3, MsgType::kNotify);
  pack_str(pk, "method");
  pack_str(pk, method);
  pack_str(pk, "body");
  return std::move(b.s);
}

std::string part_prefix(uint64_t id, bool end, bool reply) {
  Buf b;
  Packer pk(b);
  head(pk, 4, reply ? MsgType::kReplyPart : MsgType::kPart);
  key_uint(pk, "id", id);
  pack_str(pk, "end");
  end ? pk.pack_true() : pk.pack_false();
  pack_str(pk, "body");
  return std::move(b.s);
}

static std::string_view bounded_str(const msgpack::object& m, std::string_view key, size_t max) {
  std::string_view s = as_str(need_field(m, key), key);
  if (s.size() > max) throw BadMessage("field '" + std::string(key) + "' too long");
  return s;
}

Envelope decode_envelope(const msgpack::object& o) {
  Envelope e;
  std::string_view t = as_str(need_field(o, "type"), "type");
  int found = -1;
  for (int i = 0; i < (int)(sizeof kTypeNames / sizeof *kTypeNames); i++)
    if (t == kTypeNames[i]) found = i;
  if (found < 0) throw BadMessage("unknown message type '" + std::string(t.substr(0, 32)) + "'");
  e.type = (MsgType)found;
  switch (e.type) {
    case MsgType::kHello:
      e.hello.peer_id = std::string(as_bin(need_field(o, "peer"), "peer"));
      if (e.hello.peer_id.size() != 20) throw BadMessage("peer: id must be 20 bytes");
      e.hello.version = (uint32_t)as_uint(need_field(o, "version"), "version");
      e.hello.swarm = std::string(bounded_str(o, "swarm", 256));
      e.hello.listen = std::string(bounded_str(o, "listen", 256));
      e.hello.time_ms = as_int(need_field(o, "time"), "time");
      e.hello.key = std::string(as_bin(need_field(o, "key"), "key"));
      if (e.hello.key.size() != 32) throw BadMessage("key: must be 32 bytes");
      e.hello.nonce = std::string(as_bin(need_field(o, "nonce"), "nonce"));
      if (e.hello.nonce.size() != 32) throw BadMessage("nonce: must be 32 bytes");
      break;
    case MsgType::kAuth:
      e.sig = as_bin(need_field(o, "sig"), "sig");
      if (e.sig.size() != 64) throw BadMessage("sig: must be 64 bytes");
      break;
    case MsgType::kBye:
    case MsgType::kError:
      if (e.type == MsgType::kError) e.id = as_uint(need_field(o, "id"), "id");
      e.code = (ErrorCode)(int)std::min<uint64_t>(as_uint(need_field(o, "code"), "code"), 1 << 20);
      e.message = bounded_str(o, "message", kMaxMessage);
      break;
    case MsgType::kRequest:
      e.id = as_uint(need_field(o, "id"), "id");
      e.method = bounded_str(o, "method", kMaxMethod);
      e.deadline_ms = (uint32_t)std::min<uint64_t>(as_uint(need_field(o, "deadline"), "deadline"), UINT32_MAX);
      e.body = &need_field(o, "body");
      break;
    case MsgType::kResponse:
      e.id = as_uint(need_field(o, "id"), "id");
      e.body = &need_field(o, "body");
      break;
    case MsgType::kNotify:
      e.method = bounded_str(o, "method", kMaxMethod);
      e.body = &need_field(o, "body");
      break;
    case MsgType::kPart:
    case MsgType::kReplyPart:
      e.id = as_uint(need_field(o, "id"), "id");
      e.end = as_bool(need_field(o, "end"), "end");
      e.body = &need_field(o, "body");
      break;
    case MsgType::kCancel:
      e.id = as_uint(need_field(o, "id"), "id");
      break;
  }
  return e;
}

}  // namespace engine::net
