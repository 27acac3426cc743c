// engine logits: raw float32 logits of every prompt position, for comparison
// with other implementations (one row of n_vocab per position, little-endian).
#include <cstdio>

#include "commands/model_flags.h"
#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "models/loaded_model.h"

using namespace engine;

static int cmd_logits(int argc, char** argv) {
  ModelFlags mf;
  std::string prompt, out;
  ArgParser p("logits", "Run a prompt (tokenized with BOS) and write the logits of every position as raw f32.");
  mf.add_to(p);
  p.add("-p,--prompt", "TEXT", "prompt", &prompt, true);
  p.add("-o,--output", "FILE", "output file: n_tokens rows of n_vocab little-endian float32", &out, true);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    LoadedModel m = load_model(mf.model);
    ThreadPool pool(mf.threads);
    std::vector<int32_t> tokens = m.tokenizer->encode(prompt, true);
    if (tokens.empty()) throw Error("the prompt gives no tokens");
    int64_t ctx = std::max<int64_t>(choose_context(m.model->hparams(), mf.ctx), (int64_t)tokens.size());
    LocalRunner runner(*m.model, ctx, pool, mf.kv_type());
    std::vector<float> logits = runner.eval_all(tokens);
    write_file_atomic(out, logits.data(), logits.size() * sizeof(float));
    std::fprintf(stderr, "logits: %zu positions x %lld vocab written to %s\n", tokens.size(),
                 (long long)m.model->hparams().n_vocab, out.c_str());
    return 0;
  });
}

ENGINE_COMMAND("logits", "write the logits of every prompt position to a file", cmd_logits);
