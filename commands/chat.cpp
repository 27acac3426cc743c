// engine chat: interactive chat on stdin/stdout with a local model. With a chat
// template in the model, each turn is rendered with it; otherwise the text is
// a plain continuation (each line is appended and the model continues it).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "commands/adapter_flags.h"
#include "commands/model_flags.h"
#include "commands/swarm_flags.h"
#include "core/cli.h"
#include "core/error.h"
#include "models/chat_template.h"
#include "models/loaded_model.h"
#include "models/sampling.h"

using namespace engine;

template <class Runner>
static int chat_with(Runner& runner, LoadedModel& m, const SamplingFlags& sf, const std::string& system_prompt,
                     int n_predict, bool no_template);

static int cmd_chat(int argc, char** argv) {
  ModelFlags mf;
  SamplingFlags sf;
  SwarmFlags swf;
  AdapterFlag adapter;
  std::string system_prompt;
  int n_predict = 256;
  bool no_template = false;
  ArgParser p("chat", "Chat with a model on stdin/stdout (one message per line; Ctrl-D ends): local, or with "
                      "--initial-peers through the servers of a swarm.");
  mf.add_to(p);
  sf.add_to(p);
  p.add("-n,--n-predict", "N", "most tokens per reply", &n_predict);
  p.add("--system", "TEXT", "system message (templated models)", &system_prompt);
  p.flag("--no-template", "ignore the model's chat template: plain continuation", &no_template);
  adapter.add_to(p);
  swf.add_to(p, true);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    if (!swf.enabled()) {
      LoadedModel m = load_model(mf.model);
      ThreadPool pool(mf.threads);
      if (adapter.given()) {
        train::Adapter ad = adapter.load(*m.model);
        train::AdapterRunner runner(*m.model, ad, choose_context(m.model->hparams(), mf.ctx) + ad.n_prefix, pool,
                                    mf.kv_type());
        return chat_with(runner, m, sf, system_prompt, n_predict, no_template);
      }
      LocalRunner runner(*m.model, choose_context(m.model->hparams(), mf.ctx), pool, mf.kv_type());
      return chat_with(runner, m, sf, system_prompt, n_predict, no_template);
    }
    LoadedModel m = load_model(mf.model, SwarmFlags::client_load_options());
    ThreadPool pool(mf.threads);
    auto client = swf.connect(*m.model, mf.model);
    train::Adapter ad;
    if (adapter.given()) ad = adapter.load(*m.model);
    // Servers hold at most the model's context: an adapter's prefix takes part of it.
    net::SwarmRunner runner(*m.model, *client, choose_context(m.model->hparams(), mf.ctx), pool);
    if (adapter.given()) AdapterFlag::apply_to_swarm(runner, ad);
    int rc = chat_with(runner, m, sf, system_prompt, n_predict, no_template);
    swf.report(*client);
    return rc;
  });
}

template <class Runner>
static int chat_with(Runner& runner, LoadedModel& m, const SamplingFlags& sf, const std::string& system_prompt,
                     int n_predict, bool no_template) {
  {
    const LlamaHParams& hp = m.model->hparams();
    Sampler sampler(sf.params());
    const Tokenizer& tok = *m.tokenizer;
    std::string tmpl = no_template ? "" : tok.chat_template();
    const bool interactive = isatty(STDIN_FILENO);
    std::vector<ChatMessage> history;
    if (!system_prompt.empty()) history.push_back({"system", system_prompt});
    std::string rendered;  // what the context already holds, as text (templated mode)
    bool first = true;
    std::fprintf(stderr, "chat: %s, context %lld; %s\n", tmpl.empty() ? "plain continuation" : "chat template",
                 (long long)runner.n_ctx(), interactive ? "type a message, Ctrl-D to quit" : "reading stdin");

    std::string line;
    while (true) {
      if (interactive) std::fputs("> ", stderr);
      if (!std::getline(std::cin, line)) break;
      if (line.empty()) continue;
      std::vector<int32_t> input;
      if (!tmpl.empty()) {
        history.push_back({"user", line});
        std::string full = apply_chat_template(tmpl, history, true);
        // Feed only the part that is new since the last turn.
        std::string delta = full.compare(0, rendered.size(), rendered) == 0 ? full.substr(rendered.size()) : full;
        input = tok.encode(delta, first, true);
        rendered = full;
      } else {
        input = tok.encode(first ? line : "\n" + line, first);
      }
      first = false;
      if (runner.n_past() + (int64_t)input.size() + 1 >= runner.n_ctx()) {
        std::fprintf(stderr, "chat: context is full; starting over\n");
        runner.reset();
        rendered.clear();
        history.erase(history.begin(), history.end() - 1);
        first = true;
        continue;
      }
      for (int32_t t : input) sampler.accept(t);
      const std::vector<float>* logits = &runner.eval(input);
      StreamDecoder dec(tok);
      std::string reply;
      for (int i = 0; i < n_predict && runner.n_past() < runner.n_ctx(); i++) {
        int32_t next = sampler.sample(logits->data(), hp.n_vocab);
        sampler.accept(next);
        if (tok.is_eog(next)) {
          // The end-of-turn token belongs in the context, so the next turn follows it.
          if (runner.n_past() < runner.n_ctx()) runner.eval({next});
          break;
        }
        std::string piece = dec.push(next);
        reply += piece;
        std::fputs(piece.c_str(), stdout);
        std::fflush(stdout);
        logits = &runner.eval({next});
      }
      std::string rest = dec.flush();
      reply += rest;
      std::printf("%s\n", rest.c_str());
      std::fflush(stdout);
      if (!tmpl.empty()) {
        history.push_back({"assistant", reply});
        rendered = apply_chat_template(tmpl, history, false);
      }
    }
    return 0;
  }
}

ENGINE_COMMAND("chat", "chat with a model interactively", cmd_chat);
