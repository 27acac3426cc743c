// --adapter for generate and chat. Local runs use train::AdapterRunner (prefix in
// the cache, LoRA merged); swarm runs send the prefix as the session's first rows
// and the deep prompts with that step, so the servers need nothing installed.
#pragma once
#include <string>
#include <vector>

#include "core/cli.h"
#include "core/error.h"
#include "net/swarm_runner.h"
#include "train/adapter.h"

namespace engine {

struct AdapterFlag {
  std::string path;
  void add_to(ArgParser& p) {
    p.add("--adapter", "FILE", "adapter written by engine finetune (ptune, deep-ptune: local or swarm; lora: local)",
          &path);
  }
  bool given() const { return !path.empty(); }
  train::Adapter load(const LlamaModel& m) const { return train::Adapter::load(path, m.hparams()); }

  static void apply_to_swarm(net::SwarmRunner& r, const train::Adapter& ad) {
    if (ad.mode == train::AdapterMode::LoRA)
      throw Error("a LoRA adapter changes weights inside the blocks, which the swarm's servers hold: use it "
                  "locally (without --swarm)");
    std::vector<float> prompts;
    if (const float* d = ad.deep(0)) prompts.assign(d, d + ad.n_layer * ad.n_prefix * ad.n_embd);
    r.set_prefix(ad.input_rows(), std::move(prompts), ad.n_prefix);
  }
};

}  // namespace engine
