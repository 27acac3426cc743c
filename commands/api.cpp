// engine api: an OpenAI-compatible HTTP server (chat completions, completions,
// models, health, metrics) over a local model or, with --swarm, over the
// servers of a swarm. One generation thread (this one) owns every slot's
// runner; HTTP threads hand requests over through web::GenerationEngine.

#include <csignal>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "commands/model_flags.h"
#include "commands/swarm_flags.h"
#include "core/cli.h"
#include "core/error.h"
#include "models/chat_template.h"
#include "models/loaded_model.h"
#include "net/swarm_runner.h"
#include "web/api_server.h"
#include "web/generation_engine.h"
#include "web/generation_runners.h"
#include "web/health_routes.h"
#include "web/http_server.h"
#include "web/metrics.h"
#include "web/swarm_watcher.h"

using namespace engine;

namespace {

struct ApiFlags {
  std::string listen = "127.0.0.1:8080";
  std::string alias;
  int parallel = 4;
  int queue = -1;
  int64_t max_body = 1 << 20;
  void add_to(ArgParser& p) {
    p.add("--listen", "HOST:PORT", "address to serve HTTP on (port 0 picks a free one)", &listen);
    p.add("-np,--parallel", "N", "requests generated at once, each with its own KV cache / swarm session", &parallel);
    p.add("--queue", "N", "requests that may wait for a slot; more get 503 + Retry-After (default 4 x --parallel)",
          &queue);
    p.add("-a,--alias", "NAME", "model id reported and accepted (default: the file name without .gguf)", &alias);
    p.add("--max-body", "BYTES", "largest request body; larger ones get 413", &max_body);
  }
};

// Swarm statistics live on the client, which only the generation thread touches:
// it copies them into the registry after every round.
void declare_swarm_metrics(web::Metrics& m) {
  m.counter("engine_api_swarm_rpc_bytes_in_total", "bytes received from swarm servers and DHT peers");
  m.counter("engine_api_swarm_rpc_bytes_out_total", "bytes sent to swarm servers and DHT peers");
  m.counter("engine_api_swarm_rpc_calls_total", "RPC calls made");
  m.counter("engine_api_swarm_rpc_errors_total", "RPC calls answered with an error or timed out");
  m.counter("engine_api_swarm_server_failures_total", "servers that failed mid-session");
  m.counter("engine_api_swarm_reroutes_total", "sessions re-routed around a failed server");
  m.gauge("engine_api_swarm_connections", "open RPC connections");
}

void copy_swarm_metrics(web::Metrics& m, net::SwarmClient& c) {
  net::Rpc& rpc = c.rpc();
  m.set("engine_api_swarm_rpc_bytes_in_total", (double)rpc.bytes_in());
  m.set("engine_api_swarm_rpc_bytes_out_total", (double)rpc.bytes_out());
  m.set("engine_api_swarm_rpc_calls_total", (double)rpc.stats().calls);
  m.set("engine_api_swarm_rpc_errors_total", (double)rpc.stats().replies_err);
  m.set("engine_api_swarm_server_failures_total", c.stats().failures);
  m.set("engine_api_swarm_reroutes_total", c.stats().reroutes);
  m.set("engine_api_swarm_connections", (double)rpc.connection_count());
}

int cmd_api(int argc, char** argv) {
  ModelFlags mf;
  SamplingFlags sf;
  SwarmFlags swf;
  ApiFlags af;
  ArgParser p("api",
              "Serve an OpenAI-compatible HTTP API (POST /v1/chat/completions, /v1/completions; GET /v1/models, "
              "/health, /metrics) for a local model or, with --swarm, through the servers that hold its blocks. "
              "Sampling flags set the defaults of fields a request leaves out. See docs/api.md.");
  mf.add_to(p);
  af.add_to(p);
  sf.add_to(p);
  swf.add_to(p, true);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    if (af.parallel < 1 || af.parallel > 256) throw Error("--parallel must be in 1..256, got " + std::to_string(af.parallel));
    if (af.queue < 0) af.queue = 4 * af.parallel;
    if (af.max_body < 1024) throw Error("--max-body must be at least 1024, got " + std::to_string(af.max_body));
    const bool swarm = swf.enabled();
    std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not a death

    web::Metrics metrics;
    web::ApiState state;
    state.metrics = &metrics;
    state.sampling = sf.params();
    web::HttpOptions ho;
    ho.listen = af.listen;
    ho.max_body_bytes = (size_t)af.max_body;
    // Every slot and queued request holds a worker while it streams; a few more serve health and metrics.
    ho.threads = af.parallel + af.queue + 4;
    // Streams wait on generation, never on the client, so only idle reads are bounded tight.
    ho.write_timeout_s = 60;
    std::unique_ptr<web::SwarmWatcher> watcher;  // declared first: the server, destroyed first, uses it
    web::HttpServer http(ho);
    web::add_request_log(http.routes(), &metrics, ho.max_body_bytes);
    web::add_api_routes(http.routes(), state);
    // The swarm health page (GET /, /api/v1/state) from a watcher of the swarm the
    // slots run on; a local server shows its own model and endpoints at GET /.
    if (swarm) {
      web::WatcherOptions w;
      w.peers = net::split_list(swf.initial_peers);
      w.swarm = swf.swarm_name;
      w.swarm_key = swf.security.swarm_key();
      w.role = "api";
      watcher = std::make_unique<web::SwarmWatcher>(w);
      web::add_health_routes(http.routes(), *watcher);
    } else {
      web::add_local_index_route(http.routes(), state);
    }
    http.start();  // before loading, so /health answers 503 meanwhile and a taken port fails fast
    std::printf("api: listening on http://%s\n", http.address().c_str());
    std::fflush(stdout);
    if (watcher) watcher->start();

    LoadedModel m = load_model(mf.model, swarm ? SwarmFlags::client_load_options() : LlamaLoadOptions{});
    ThreadPool pool(mf.threads);
    std::unique_ptr<net::SwarmClient> client;
    int64_t n_ctx = choose_context(m.model->hparams(), mf.ctx);
    std::vector<std::unique_ptr<web::SlotRunner>> slots;
    for (int i = 0; i < af.parallel; i++) {
      if (swarm) {
        if (!client) client = swf.connect(*m.model, mf.model);
        slots.push_back(std::make_unique<web::SwarmSlot>(*m.model, *client, n_ctx, pool));
      } else {
        slots.push_back(std::make_unique<web::LocalSlot>(*m.model, n_ctx, pool, mf.kv_type()));
      }
    }
    std::function<void()> after_round;
    if (client) {
      declare_swarm_metrics(metrics);
      after_round = [&] { copy_swarm_metrics(metrics, *client); };
    }
    web::GenerationEngine engine(*m.tokenizer, m.model->hparams().n_vocab, std::move(slots), (size_t)af.queue,
                                 &metrics, after_round);

    std::string tmpl = m.tokenizer->chat_template();
    std::string family = tmpl.empty() ? "" : chat_template_family(tmpl);
    // A model without a (recognized) template is served with chatml, as llama-server does.
    state.chat_template = family.empty() ? "chatml" : tmpl;
    std::string name = net::model_dht_name(mf.model);
    state.model_id = af.alias.empty() ? name : af.alias;
    state.model_names = {state.model_id, name, mf.model};
    state.tok = m.tokenizer.get();
    state.engine = &engine;
    state.created = (int64_t)std::time(nullptr);
    state.ready = true;
    std::printf("api: ready: model %s, %s, %d slots of %lld tokens, queue %d, chat template %s\n",
                state.model_id.c_str(), swarm ? "through the swarm" : "local", af.parallel, (long long)n_ctx,
                af.queue, family.empty() ? "chatml (fallback)" : family.c_str());
    std::fflush(stdout);
    engine.run();
    return 0;
  });
}

}  // namespace

ENGINE_COMMAND("api", "serve an OpenAI-compatible HTTP API (local or swarm)", cmd_api);
