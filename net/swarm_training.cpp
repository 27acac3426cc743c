#include "net/swarm_training.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "cpu/ops.h"
#include "net/hidden_wire.h"

namespace engine::net {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string reply_error(const Reply& r) { return std::string(error_code_name(r.code)) + ": " + r.message; }

std::string span_name(int64_t a, int64_t b) { return std::to_string(a) + ":" + std::to_string(b); }

}  // namespace

TrainingChain::TrainingChain(SwarmClient& client) : c_(client) {}

int64_t TrainingChain::sequences_per_request(int tensors) const {
  const auto& o = c_.options();
  const size_t per_seq = (size_t)(n_ * o.n_embd) * (dtype_block_bytes(o.wire_dtype) + (tensors > 1 ? 4 : 0));
  const size_t fixed = prompts_ ? (size_t)(o.n_blocks * P_ * o.n_embd * 4) : 0;
  if (per_seq + fixed > o.max_request_bytes)
    throw Error("a sequence of " + std::to_string(n_) + " positions does not fit in one request (" +
                std::to_string(o.max_request_bytes >> 20) + " MiB): use a shorter --seqlen");
  return std::max<int64_t>(1, (int64_t)((o.max_request_bytes - fixed) / per_seq));
}

Route TrainingChain::route_or_wait(int64_t from, int64_t to) {
  const auto& o = c_.options();
  const double deadline = now_s() + o.give_up_s;
  for (;;) {
    Route r = c_.route(from, to, RouteMode::kMaxThroughput);
    if (!r.empty()) return r;
    if (now_s() > deadline)
      throw Error("no server for blocks " + span_name(from, to) + " of model " + o.model + " (waited " +
                  std::to_string((int)o.give_up_s) + " s)");
    c_.sleep_ms(500);
    c_.refresh();
  }
}

bool TrainingChain::call_forward(const RouteHop& h, float* x, std::string* err) {
  const auto& o = c_.options();
  const int64_t E = o.n_embd, per = sequences_per_request(1);
  std::vector<float> out((size_t)(B_ * n_ * E));
  for (int64_t s0 = 0; s0 < B_; s0 += per) {
    const int64_t m = std::min(per, B_ - s0);
    Buf b;
    Packer pk(b);
    pk.pack_map(prompts_ ? 5 : 4);
    pack_str(pk, "model"), pack_str(pk, o.model);
    pack_str(pk, "first"), pk.pack_int64(h.first);
    pack_str(pk, "last"), pk.pack_int64(h.last);
    pack_str(pk, "hidden"), pack_batch(pk, o.wire_dtype, x + s0 * n_ * E, m, n_, E);
    if (prompts_) {
      pack_str(pk, "prompts");
      pack_tensor(pk, DType::F32, {h.last - h.first, P_, E}, prompts_ + h.first * P_ * E,
                  (size_t)((h.last - h.first) * P_ * E) * sizeof(float));
    }
    std::string res;
    stats_.forward_calls++;
    Reply rep = c_.call(h.address, "blocks.forward", std::move(b.s), o.step_timeout_ms, &res);
    if (!rep.ok()) {
      *err = "forward: " + reply_error(rep);
      return false;
    }
    try {
      auto oh = unpack_untrusted(res.data(), res.size());
      HiddenBatch got = unpack_batch(unpack_tensor(need_field(oh.get(), "hidden")), E, m * n_);
      if (got.batch != m || got.n != n_) throw BadMessage("wrong shape");
      std::memcpy(out.data() + s0 * n_ * E, got.data.data(), got.data.size() * sizeof(float));
    } catch (const BadMessage& e) {
      *err = std::string("forward: bad reply: ") + e.what();
      return false;
    }
  }
  std::memcpy(x, out.data(), out.size() * sizeof(float));
  return true;
}

bool TrainingChain::call_backward(const RouteHop& h, const float* x, float* dx, float* prompt_grad,
                                  std::string* err) {
  const auto& o = c_.options();
  const int64_t E = o.n_embd, per = sequences_per_request(2);
  const int64_t pn = (h.last - h.first) * P_ * E;
  std::vector<float> out((size_t)(B_ * n_ * E));
  std::vector<float> pg(prompts_ ? (size_t)pn : 0, 0.0f);
  for (int64_t s0 = 0; s0 < B_; s0 += per) {
    const int64_t m = std::min(per, B_ - s0);
    Buf b;
    Packer pk(b);
    pk.pack_map(prompts_ ? 6 : 5);
    pack_str(pk, "model"), pack_str(pk, o.model);
    pack_str(pk, "first"), pk.pack_int64(h.first);
    pack_str(pk, "last"), pk.pack_int64(h.last);
    pack_str(pk, "hidden"), pack_batch(pk, o.wire_dtype, x + s0 * n_ * E, m, n_, E);
    // Gradients always travel as f32: their range is too wide for f16.
    pack_str(pk, "grad"), pack_batch(pk, DType::F32, dx + s0 * n_ * E, m, n_, E);
    if (prompts_) {
      pack_str(pk, "prompts");
      pack_tensor(pk, DType::F32, {h.last - h.first, P_, E}, prompts_ + h.first * P_ * E, (size_t)pn * sizeof(float));
    }
    std::string res;
    stats_.backward_calls++;
    Reply rep = c_.call(h.address, "blocks.backward", std::move(b.s), o.step_timeout_ms, &res);
    if (!rep.ok()) {
      *err = "backward: " + reply_error(rep);
      return false;
    }
    try {
      auto oh = unpack_untrusted(res.data(), res.size());
      HiddenBatch got = unpack_batch(unpack_tensor(need_field(oh.get(), "grad")), E, m * n_);
      if (got.batch != m || got.n != n_) throw BadMessage("wrong shape");
      std::memcpy(out.data() + s0 * n_ * E, got.data.data(), got.data.size() * sizeof(float));
      if (prompts_) {
        TensorView t = unpack_tensor(need_field(oh.get(), "prompts_grad"));
        if (t.dtype != DType::F32 || t.shape != std::vector<int64_t>{h.last - h.first, P_, E})
          throw BadMessage("prompts_grad has the wrong shape");
        std::vector<float> tmp((size_t)pn);
        std::memcpy(tmp.data(), t.data.data(), tmp.size() * sizeof(float));
        cpu::add_inplace(pg.data(), tmp.data(), pn);
      }
    } catch (const BadMessage& e) {
      *err = std::string("backward: bad reply: ") + e.what();
      return false;
    }
  }
  // Only a complete answer counts: a failure above leaves dx and prompt_grad untouched.
  std::memcpy(dx, out.data(), out.size() * sizeof(float));
  if (prompts_ && prompt_grad) cpu::add_inplace(prompt_grad + h.first * P_ * E, pg.data(), pn);
  return true;
}

void TrainingChain::forward_range(int64_t from, int64_t to, float* x, std::vector<Hop>* hops) {
  const size_t count = (size_t)(B_ * n_ * c_.options().n_embd);
  int64_t at = from;
  while (at < to) {
    const RouteHop h = route_or_wait(at, to).front();
    std::vector<float> input(x, x + count);
    std::string err;
    if (!call_forward(h, x, &err)) {
      stats_.failures++, stats_.redone_forwards++;
      c_.ban(h.id, err);
      std::memcpy(x, input.data(), count * sizeof(float));
      continue;  // route blocks [at, to) again
    }
    if (hops) hops->push_back(Hop{h, std::move(input)});
    at = h.last;
  }
}

void TrainingChain::backward_hop(const RouteHop& first_try, const std::vector<float>& x, float* dx,
                                 float* prompt_grad) {
  std::string err;
  if (call_backward(first_try, x.data(), dx, prompt_grad, &err)) return;
  stats_.failures++, stats_.redone_backwards++;
  c_.ban(first_try.id, err);
  const int64_t a = first_try.first, b = first_try.last;
  c_.log("backward of blocks " + span_name(a, b) + " failed; routing them again");
  // Blocks [a, b) anew. When the new route splits them, the kept input runs forward
  // through all but its last hop (learning their inputs; forward_range ends exactly
  // where that hop begins), then backward goes through every piece in reverse.
  const Route r = route_or_wait(a, b);
  std::vector<Hop> pieces;
  std::vector<float> cur = x;
  forward_range(a, r.back().first, cur.data(), &pieces);
  backward_hop(r.back(), cur, dx, prompt_grad);
  for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) backward_hop(it->hop, it->input, dx, prompt_grad);
}

void TrainingChain::forward(float* x, int64_t B, int64_t n, const float* prompts, int64_t P, bool keep) {
  if (B < 1 || n < 1) throw Error("training chain: empty batch");
  if (prompts && (P < 1 || P > n)) throw Error("training chain: prompt length must be in 1..n");
  if (c_.servers().empty()) c_.refresh();
  B_ = B, n_ = n, P_ = prompts ? P : 0, prompts_ = prompts;
  hops_.clear();
  forward_range(0, c_.options().n_blocks, x, keep ? &hops_ : nullptr);
  if (keep) {
    Route r;
    for (auto& h : hops_) r.push_back(h.hop);
    const std::string now = route_to_string(r);
    if (now != last_route_) c_.log("training route: " + now);
    last_route_ = now;
  }
}

void TrainingChain::backward(float* dx, float* prompt_grad) {
  if (hops_.empty()) throw Error("training chain: backward without a kept forward");
  for (auto it = hops_.rbegin(); it != hops_.rend(); ++it) backward_hop(it->hop, it->input, dx, prompt_grad);
  hops_.clear();
}

}  // namespace engine::net
