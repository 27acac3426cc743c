// The msgpack body of every frame: a map {"type": ..., "id": ..., ...}.
// Large values (request args, results, stream parts) are encoded by the
// caller and appended after an envelope prefix that ends with the key "body",
// so they are never copied into a second buffer.
#pragma once
#include <cstdint>
#include <msgpack.hpp>
#include <string>
#include <string_view>

namespace engine::net {

// kPart flows from the caller to the handler of an open request; kReplyPart
// from the handler back to the caller. Two types keep them apart when both
// peers call each other over one connection (call ids are per sender).
enum class MsgType { kHello, kBye, kRequest, kResponse, kError, kNotify, kPart, kReplyPart, kCancel, kAuth };
const char* msg_type_name(MsgType t);

// Codes carried by error replies and goodbyes (docs/protocol.md).
enum class ErrorCode : int {
  kOk = 0,
  kBadRequest = 1,       // fields missing or of the wrong type
  kUnknownMethod = 2,
  kDeadlineExceeded = 3,
  kUnavailable = 4,      // connection failed or closed before the reply
  kOverloaded = 5,       // local send buffer full; try later
  kInternal = 6,         // the handler failed
  kCancelled = 7,
  kProtocol = 8,         // bad handshake or message order; connection closed
  kRejected = 9,         // swarm mismatch, clock skew, limits, bans
  kNotFound = 10,
};
const char* error_code_name(ErrorCode c);

struct Hello {
  std::string peer_id;  // 20 bytes
  uint32_t version = 0;
  std::string swarm;
  std::string listen;   // address others should dial; "" for clients that do not listen
  int64_t time_ms = 0;  // sender's wall clock, Unix epoch ms
  std::string key;      // sender's Ed25519 public key (32 bytes); peer_id must be its peer id
  std::string nonce;    // 32 fresh random bytes; the other side's identity proof signs them
};

// A decoded envelope; string views and `body` point into the frame body.
struct Envelope {
  MsgType type = MsgType::kNotify;
  uint64_t id = 0;
  std::string_view method;
  uint32_t deadline_ms = 0;  // request: time budget the caller grants
  ErrorCode code = ErrorCode::kOk;
  std::string_view message;
  bool end = false;          // part: last part of the stream
  const msgpack::object* body = nullptr;
  Hello hello;
  std::string_view sig;      // auth: Ed25519 signature of the handshake transcript
};

// Throws BadMessage.
Envelope decode_envelope(const msgpack::object& o);

std::string encode_hello(const Hello& h);
std::string encode_auth(std::string_view signature);
std::string encode_bye(ErrorCode code, std::string_view message);
std::string encode_error(uint64_t id, ErrorCode code, std::string_view message);
std::string encode_cancel(uint64_t id);
// Prefixes: one msgpack object (the body) must be appended.
std::string request_prefix(uint64_t id, std::string_view method, uint32_t deadline_ms);
std::string response_prefix(uint64_t id);
std::string notify_prefix(std::string_view method);
std::string part_prefix(uint64_t id, bool end, bool reply);

// Longest accepted method name / error message.
constexpr size_t kMaxMethod = 64;
constexpr size_t kMaxMessage = 1024;

}  // namespace engine::net
