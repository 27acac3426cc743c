// Pipeline-parallel (SWARM) training compute: the model's blocks are cut into stages
// (stage_part), a stage peer holds one stage's blocks and runs them forward and
// backward on micro-batches of hidden states; the trainer holds the embedding and the
// head (trainer_part), embeds windows, computes the loss and its gradient, and
// back-propagates into the embedding. Chained over the stages,
//   embed_windows → part_forward (stage 0, 1, ...) → head_loss_and_grad
//   → part_backward (..., 1, 0) → embed_backward
// gives model_loss_and_grad's loss and gradient (each part's slice of it) BIT FOR BIT
// on the same windows with the same pool size: the functions share its code
// (train/model_compute.h), its per-window gradient buffers and their window order.
//
// Hidden states are [B][n][d] (d = n_embd): B windows of n tokens, each its own causal
// sequence at positions 0..n-1. Every function is stateless apart from its arguments:
// calls on different parts or buffers may run concurrently on different pools; the
// parameters must not change during a call (apply_step between calls).
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "train/model_params.h"

namespace engine::train {

// Training forward of every block of `part` (part.part.n_blocks >= 1) on x [B][n][d]
// in place. No activations kept.
void part_forward(const ModelParams& part, float* x, int64_t B, int64_t n, ThreadPool& pool);

// Backward of the same blocks: x_in [B][n][d] the part's inputs (the forward is
// recomputed from them), dx [B][n][d]: in, the gradient of the part's outputs; out, of
// its inputs. grad (laid out like part.data, size part.size(); may be null = input
// gradient only) ACCUMULATES the blocks' weight and norm gradients.
// Memory per call: a transposed copy of the part's linears (about the part's size),
// per window in flight its activations (or checkpoints, past kKeepActsBytes), and with
// windows in parallel (n_embd <= 512, pool.size() > 1, B > 1) pool.size() gradient
// buffers of the part's block tensors.
void part_backward(const ModelParams& part, const float* x_in, float* dx, int64_t B, int64_t n, float* grad,
                   ThreadPool& pool);

// Trainer side (part.part.embd_head). Windows all of length n (inputs and targets;
// Error otherwise, and for input tokens outside the vocabulary): x [B][n][d] out.
void embed_windows(const ModelParams& part, const std::vector<Window>& windows, float* x);

// Head + cross entropy on the final hidden states x [B][n][d] (output_norm + output +
// softmax CE against windows[i].targets; targets < 0 score nothing). dx non-null:
// receives (overwritten) d(grad_scale·Σloss)/dx [B][n][d]; grad non-null (part layout):
// accumulates the output and output_norm gradients. Both null: loss only (evaluation).
CrossEntropyResult head_loss_and_grad(const ModelParams& part, const float* x, const std::vector<Window>& windows,
                                      float grad_scale, float* dx, float* grad, ThreadPool& pool);

// Accumulates the token embedding gradient (part layout) from dx [B][n][d] (the
// gradient of the first stage's inputs), window after window. This equals
// model_loss_and_grad's embedding gradient when that runs windows one after another
// (one thread, or a large model); the overload with the pool matches it for any pool.
void embed_backward(const ModelParams& part, const std::vector<Window>& windows, const float* dx, float* grad);
// With windows in parallel (the same rule as the others), each window's rows are summed
// on their own and added to grad in window order, as model_loss_and_grad's per-window
// buffers are; otherwise as above. Runs on the calling thread only.
void embed_backward(const ModelParams& part, const std::vector<Window>& windows, const float* dx, float* grad,
                    ThreadPool& pool);

}  // namespace engine::train
