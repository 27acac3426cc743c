// The OpenAI-compatible routes of `engine api` on an httplib server:
// POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
// GET /health, GET /metrics, plus a log line and request metrics for every
// request and OpenAI-style error bodies for 404/413.
#pragma once
#include <atomic>
#include <httplib.h>
#include <string>
#include <vector>

#include "models/tokenizer.h"
#include "web/generation_engine.h"
#include "web/metrics.h"

namespace engine::web {

struct ApiState {
  // Set once the model is loaded, then `ready` flips; until then the
  // generation routes and /health answer 503.
  std::string model_id;                  // reported in replies and /v1/models
  std::vector<std::string> model_names;  // accepted in a request's "model"
  const Tokenizer* tok = nullptr;
  std::string chat_template;             // the model's; "" -> chatml, as llama-server falls back
  GenerationEngine* engine = nullptr;
  int64_t created = 0;
  SamplingParams sampling;               // defaults for fields a request leaves out
  std::atomic<bool> ready{false};
  Metrics* metrics = nullptr;
};

// Registers the routes above; `state` must outlive the server.
void add_api_routes(httplib::Server& server, ApiState& state);

// GET / of a local (non-swarm) API server: a small page naming the model, its
// context and slots, and the endpoints. (With --swarm, GET / is the swarm
// health page, web/health_routes.h.)
void add_local_index_route(httplib::Server& server, ApiState& state);

// One stderr line per request (method, path, status, tokens, time) and the
// engine_api_requests_total metric; JSON error bodies for unrouted 404s and 413s.
void add_request_log(httplib::Server& server, Metrics* metrics, size_t max_body_bytes);

}  // namespace engine::web
