// Spot checks of server outputs (the pure parts; net/swarm_client.cpp drives
// them): how far two servers' hidden states for the same inputs may differ,
// where they first differ, how a disagreement is arbitrated, and how a
// session's recorded history is cut back to the last trusted position.
//
// Tolerance: rows are compared by relative L2 error ||a - b|| / ||b||, per
// position. Two honest servers differ only by rounding: the wire dtype (both
// replies were rounded to it, and so was every input after the first hop),
// f16 KV caches and summation order (a replay runs in one batch, the original
// ran token by token). The largest honest difference measured on stories260K
// (400 tokens, bench/spot_check_bench.sh) was 2.4e-3 with f32 on the wire,
// 8e-4 with f16, 4.6e-3 with bf16; the defaults leave a margin of about 4-10x:
// f32 1e-2, f16 2e-2, bf16 5e-2 (a liar adding noise of a tenth of the signal
// shows 1e-1). Servers do not announce their weight format (ServerInfo has
// none yet), so a swarm mixing e.g. SpQR and f16 servers of one model needs
// --verify-tolerance raised to that gap.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace engine::net {

// Default tolerance (relative L2 error per position) for hidden states sent as `wire`.
double spot_check_tolerance(DType wire);

// Relative L2 error of row a against row b (the reference); 0 for two zero rows.
double row_error(const float* a, const float* b, int64_t n_embd);

// First position (row) whose error exceeds `tol`, or -1 when all `rows` agree.
// Non-finite values always count as a mismatch.
int64_t first_mismatch(const float* a, const float* b, int64_t rows, int64_t n_embd, double tol);

// Verdict on a primary server P checked by a verifier V (and, when they
// disagree, by a third server W). With only P and V there is no majority: the
// client cannot tell which one lies, so it bans neither (kUnresolved).
enum class Verdict { kAgree, kPrimaryLies, kVerifierLies, kUnresolved };
// `p_vs_v`: first mismatch of P against V (-1: agree). `w_vs_p`, `w_vs_v`:
// first mismatch of W against P and V, or -2 when there was no W.
Verdict arbitrate(int64_t p_vs_v, int64_t w_vs_p, int64_t w_vs_v);
const char* verdict_name(Verdict v);

// Cuts a span's history back to its first `keep` positions: `rows` [pos][n_embd]
// and the step sizes they were sent in (a step across `keep` is shortened).
void truncate_history(std::vector<float>& rows, std::vector<int64_t>& steps, int64_t n_embd, int64_t keep);

// Generation rollback: `k` positions of the session survived a failed spot
// check (`all` holds the prompt's `n_prompt` tokens, then the generated ones).
// Tokens 0..k are right (token k came from the verified output of position
// k-1), as is every prompt token; the rest were sampled from bad logits.
// Returns how many tokens of `all` to keep; the caller feeds all[k..keep) again.
size_t tokens_to_keep(size_t n_all, size_t n_prompt, int64_t k);

}  // namespace engine::net
