// Flags shared by the commands that run a model.
#pragma once
#include <string>

#include "core/cli.h"
#include "core/dtype.h"
#include "core/error.h"
#include "models/sampling.h"

namespace engine {

struct ModelFlags {
  std::string model;
  int threads = 0;
  int64_t ctx = 0;
  std::string kv_type_name = "f16";
  DType kv_type() const {
    if (kv_type_name == "f16") return DType::F16;
    if (kv_type_name == "f32") return DType::F32;
    throw Error("--kv-type is f16 or f32");
  }
  void add_to(ArgParser& p) {
    p.add("--kv-type", "T", "KV cache type: f16 (as llama.cpp) or f32", &kv_type_name);
    p.add("-m,--model", "FILE", "model GGUF", &model, true);
    p.add("-t,--threads", "N", "threads (default: all cores)", &threads);
    p.add("-c,--ctx-size", "N", "context size (default: the model's, at most 4096)", &ctx);
  }
};

struct SamplingFlags {
  SamplingParams sp;
  uint64_t seed = 0xFFFFFFFFu;
  void add_to(ArgParser& p) {
    p.add("--temp", "T", "temperature; 0 = greedy", &sp.temperature);
    p.add("--top-k", "K", "top-k (0 = off)", &sp.top_k);
    p.add("--top-p", "P", "top-p (1 = off)", &sp.top_p);
    p.add("--min-p", "P", "min-p (0 = off)", &sp.min_p);
    p.add("--repeat-penalty", "X", "repetition penalty (1 = off)", &sp.repeat_penalty);
    p.add("--repeat-last-n", "N", "tokens the repetition penalty looks back on", &sp.repeat_last_n);
    p.add("-s,--seed", "S", "random seed (default: from the clock)", &seed);
  }
  SamplingParams params() const {
    SamplingParams r = sp;
    r.seed = seed;
    return r;
  }
};

}  // namespace engine
