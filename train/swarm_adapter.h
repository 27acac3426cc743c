// adapter_loss_and_grad with the blocks on the swarm (Petals' fine-tuning): the
// client holds the embeddings, the head and the adapter; servers run every block
// forward and backward (net/swarm_training.h). Prompt tuning only: ptune's prefix
// travels as the first rows of the hidden states, deep-ptune's per-block prompts
// with each request. LoRA adapts weights inside the blocks, so it trains only
// spans the trainer holds itself (finetune without --swarm).
#pragma once
#include <vector>

#include "net/swarm_training.h"
#include "train/adapter.h"

namespace engine::train {

// Same contract as adapter_loss_and_grad: Σ loss over the windows' targets, and
// with `grad` the gradient of grad_scale·Σloss accumulated. The windows must
// have equal lengths (one batch tensor).
CrossEntropyResult swarm_adapter_loss_and_grad(net::TrainingChain& chain, const LlamaModel& client_model,
                                               const LmHead& head, const Adapter& ad,
                                               const std::vector<Window>& windows, float grad_scale, float* grad,
                                               ThreadPool& pool);

}  // namespace engine::train
