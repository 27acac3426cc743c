// The messages of SWARM pipeline training (docs/protocol.md §10): a trainer sends a
// micro-batch's hidden states through one peer of every stage ("swarm.fwd") and
// their gradients back ("swarm.bwd"). Every request names the run, the stage and the
// epoch (the trainers' optimizer step) it belongs to; a stage peer answers with a
// status, so that "this micro-batch is from an epoch we left" and "wait, we are still
// averaging" are answers, not errors:
//   ok     the result is in `y` (forward: the stage's outputs; backward: the gradient
//          of its inputs)
//   stale  the stage is past that epoch: the micro-batch cannot count any more
//   wait   the stage is still finishing an earlier epoch: send again shortly
//   moved  this peer serves another stage now (rebalancing)
// Activations travel as f32, f16, bf16 or int8 (blockwise, one f32 scale per 32
// values, train/wire_dtype.h) — the sender's choice, and the reply uses the same.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "net/msg.h"

namespace engine::train {

enum class ActDType { F32, F16, BF16, Q8 };
bool act_dtype_from_name(const std::string& s, ActDType* out);  // "f32", "f16", "bf16", "int8"
const char* act_dtype_name(ActDType t);
// Bytes that B·n·d activations take on the wire (data only).
size_t act_bytes(ActDType t, int64_t count);

// A batch of B windows of n positions of width d, f32 after decoding.
struct Acts {
  int64_t batch = 0, n = 0;
  ActDType dtype = ActDType::F32;
  std::vector<float> data;  // [batch][n][d]
};
// {"dtype": name, "shape": [B, n, d], "data": bin}
void pack_acts(net::Packer& pk, ActDType t, const float* x, int64_t batch, int64_t n, int64_t d);
// Checks the shape ([B, n, d] with d == width, 1 <= n <= max_n, B·n <= max_positions),
// the byte count and that every value is finite; BadMessage saying what is wrong.
Acts unpack_acts(const msgpack::object& o, int64_t width, int64_t max_n, int64_t max_positions);

struct StageRequest {
  std::string run;
  int64_t stage = 0;
  int64_t epoch = 0;
  uint64_t micro_batch = 0;   // the trainer's id for it (logs)
  int64_t samples = 0;        // backward: windows behind it (what the stage counts)
  int64_t tokens = 0;         // backward: scored tokens behind it (the averaging weight)
  Acts x;                     // the stage's inputs
  Acts dy;                    // backward: the gradient of the stage's outputs
};
std::string encode_stage_request(const StageRequest& r, bool backward, ActDType t, int64_t d);
// Strict decoding of an untrusted request (BadMessage); dy is required for backward
// and must have x's shape; samples in [1, B], tokens in [0, B·n].
StageRequest decode_stage_request(const msgpack::object& o, bool backward, int64_t width, int64_t max_n,
                                  int64_t max_positions);

enum class StageStatus { Ok, Stale, Wait, Moved };
const char* stage_status_name(StageStatus s);

struct StageReply {
  StageStatus status = StageStatus::Ok;
  int64_t epoch = 0;          // the stage peer's epoch
  Acts y;                     // Ok only
};
std::string encode_stage_reply(StageStatus s, int64_t epoch, const float* y, int64_t batch, int64_t n, int64_t d,
                               ActDType t);
// Strict decoding of an untrusted reply: an Ok reply's y must be exactly [batch, n, d]
// and finite (a stage peer that answers otherwise is to be banned).
StageReply decode_stage_reply(const msgpack::object& o, int64_t batch, int64_t n, int64_t d);

}  // namespace engine::train
