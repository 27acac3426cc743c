// Training through the swarm (Petals' RemoteSequential under autograd): the
// client runs every block remotely with the stateless blocks.forward and
// blocks.backward RPCs (docs/protocol.md §7).
//
// Forward goes hop by hop along the route of highest throughput and keeps each
// hop's input. Backward walks the same hops in reverse, sending each the input
// it kept and the gradient of its output; the server recomputes its activations
// from that input, so any server holding those blocks can answer. When a server
// fails, only its part is redone: in forward its hop is routed again from where
// it began; in backward its blocks are routed again and, when the new route
// splits them over several servers, the kept input is run forward through all but
// the last of those first (to get their inputs), then backward through them all.
#pragma once
#include <cstdint>
#include <vector>

#include "net/swarm_client.h"

namespace engine::net {

class TrainingChain {
 public:
  explicit TrainingChain(SwarmClient& client);

  // x [B][n][n_embd] in place through every block. prompts: deep prompts of all
  // blocks [n_blocks][P][n_embd] (null: none); each server gets its blocks' slice.
  // With keep, remembers each hop's input for backward (the previous pass's are dropped).
  void forward(float* x, int64_t B, int64_t n, const float* prompts, int64_t P, bool keep);
  // dx [B][n][n_embd]: gradient of the last block's output in, of block 0's input
  // out. prompt_grad [n_blocks][P][n_embd] (null: not wanted) is accumulated.
  // Needs a forward with keep just before.
  void backward(float* dx, float* prompt_grad);

  struct Stats {
    int64_t forward_calls = 0, backward_calls = 0;
    int64_t failures = 0;           // failed calls (each bans its server)
    int64_t redone_forwards = 0;    // forward calls made again because a server failed
    int64_t redone_backwards = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Hop {
    RouteHop hop;
    std::vector<float> input;  // [B][n][n_embd]
  };
  // One call to one server over all B sequences (split into requests that fit
  // the request size). false and *err when the server failed. Backward: `io` is
  // the gradient (output in, input out), `x` the kept input.
  bool call_forward(const RouteHop& h, float* x, std::string* err);
  bool call_backward(const RouteHop& h, const float* x, float* dx, float* prompt_grad, std::string* err);
  // Forward of blocks [from, to): routes, calls, re-routes on failure. Appends the
  // hops used (with their inputs) to `hops` when given.
  void forward_range(int64_t from, int64_t to, float* x, std::vector<Hop>* hops);
  // Backward of blocks [h.first, h.last) whose input is `x`, trying `h` first.
  void backward_hop(const RouteHop& h, const std::vector<float>& x, float* dx, float* prompt_grad);
  Route route_or_wait(int64_t from, int64_t to);
  // Sequences per request so that `tensors` tensors of [n][n_embd] f32 fit.
  int64_t sequences_per_request(int tensors) const;

  SwarmClient& c_;
  int64_t B_ = 0, n_ = 0, P_ = 0;
  const float* prompts_ = nullptr;
  std::vector<Hop> hops_;
  std::string last_route_;  // logged when it changes
  Stats stats_;
};

}  // namespace engine::net
