#include "web/api_server.h"

#include "core/xml_escape.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "models/chat_template.h"
#include "web/http_server.h"
#include "web/openai_request.h"
#include "web/openai_response.h"
#include "web/sse.h"

namespace engine::web {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// What the log line needs from a request. httplib routes, streams and logs a
// request on one worker thread, so a thread-local carries it from the handler
// (and the stream's content provider) to the logger.
struct RequestInfo {
  bool valid = false;
  Clock::time_point start;
  int64_t prompt_tokens = -1, completion_tokens = -1;
};
thread_local RequestInfo t_req;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void reply_error(httplib::Response& res, const ApiError& e) { reply_json(res, e.status, e.to_json()); }

ApiError unavailable(const std::string& msg, const std::string& code) {
  ApiError e;
  e.status = 503;
  e.type = "unavailable_error";
  e.message = msg;
  e.code = code;
  return e;
}

// The request's prompt as tokens, or the error to answer with.
bool prompt_tokens(const ApiState& st, const GenerationRequest& r, std::vector<int32_t>* out, ApiError* err) {
  const Tokenizer& tok = *st.tok;
  if (r.endpoint == Endpoint::Chat) {
    std::string text = apply_chat_template(st.chat_template, r.messages, true);
    *out = tok.encode(text, true, true);  // the template spells control tokens as text
  } else if (r.prompt_is_tokens) {
    for (int32_t t : r.prompt_tokens) {
      if (t >= tok.n_vocab()) {
        err->message = "token id " + std::to_string(t) + " in 'prompt' is outside the vocabulary (" +
                       std::to_string(tok.n_vocab()) + " tokens)";
        err->param = "prompt";
        return false;
      }
    }
    *out = r.prompt_tokens;
  } else {
    *out = tok.encode(r.prompt, true);
  }
  if (out->empty() && tok.bos() >= 0) out->push_back(tok.bos());
  if (out->empty()) {
    err->message = "the prompt is empty and the model has no BOS token to start from";
    err->param = r.endpoint == Endpoint::Chat ? "messages" : "prompt";
    return false;
  }
  int64_t n_ctx = st.engine->n_ctx();
  if ((int64_t)out->size() >= n_ctx) {
    err->message = "This model's maximum context length is " + std::to_string(n_ctx) + " tokens; the prompt is " +
                   std::to_string(out->size()) + " tokens (restart with a larger -c to allow more)";
    err->param = r.endpoint == Endpoint::Chat ? "messages" : "prompt";
    err->code = "context_length_exceeded";
    return false;
  }
  return true;
}

// The stream of one request: the job, and what has been written so far.
struct Stream {
  std::shared_ptr<GenerationJob> job;
  ReplyMeta meta;
  const Tokenizer* tok = nullptr;
  bool want_logprobs = false, include_usage = false, first = true;
  int64_t prompt_tokens = 0, offset = 0;
};

// One call of httplib's chunked content provider: writes what the job has
// produced (waiting up to a second), or a keep-alive comment that finds out
// whether the client is still there. A failed write cancels the job.
bool pump(Stream& s, httplib::DataSink& sink) {
  auto write = [&](const std::string& data) {
    if (sink.write(data.data(), data.size())) return true;
    s.job->cancel();
    return false;
  };
  if (s.first && s.meta.endpoint == Endpoint::Chat) {  // the role first, at once, as OpenAI does
    s.first = false;
    if (!write(sse_data(dump(stream_chunk(s.meta, "", nullptr, "", true))))) return false;
  }
  std::vector<GenerationEvent> events;
  s.job->wait(&events, std::chrono::milliseconds(1000));
  if (events.empty()) return write(sse_keepalive());
  for (GenerationEvent& e : events) {
    t_req.completion_tokens = s.job->completion_tokens();
    if (e.error) {
      // Headers are gone already: the error travels as an event, as llama-server does.
      if (!write(sse_data(e.error->to_json())) || !write(sse_done())) return false;
      sink.done();
      return true;
    }
    if (!e.text.empty() || !e.logprobs.empty()) {
      json lp = s.want_logprobs ? logprobs_json(s.meta.endpoint, e.logprobs, *s.tok, &s.offset) : json(nullptr);
      if (!write(sse_data(dump(stream_chunk(s.meta, e.text, lp, "", s.first))))) return false;
      s.first = false;
    }
    if (!e.finish_reason.empty()) {
      if (!write(sse_data(dump(stream_chunk(s.meta, "", nullptr, e.finish_reason, s.first))))) return false;
      if (s.include_usage &&
          !write(sse_data(dump(usage_chunk(s.meta, {s.prompt_tokens, s.job->completion_tokens()})))))
        return false;
      if (!write(sse_done())) return false;
      sink.done();
      return true;
    }
  }
  return true;
}

void handle_generation(ApiState& st, Endpoint ep, const httplib::Request& req, httplib::Response& res) {
  if (!st.ready) return reply_error(res, unavailable("Loading model", "model_loading"));
  ParseResult parsed = parse_generation_request(ep, req.body, st.sampling);
  if (auto* e = std::get_if<ApiError>(&parsed)) return reply_error(res, *e);
  GenerationRequest& r = std::get<GenerationRequest>(parsed);
  if (!model_name_matches(r.model, st.model_names)) return reply_error(res, model_not_found(r.model));
  GenerationInput in;
  ApiError err;
  if (!prompt_tokens(st, r, &in.prompt, &err)) return reply_error(res, err);
  in.max_tokens = r.max_tokens;
  in.sampling = r.sampling;
  in.stop = r.stop;
  in.logprobs = r.logprobs;
  int64_t n_prompt = (int64_t)in.prompt.size();
  t_req.prompt_tokens = n_prompt;
  std::shared_ptr<GenerationJob> job = st.engine->submit(std::move(in));
  if (!job) {
    res.set_header("Retry-After", "1");
    return reply_error(res, unavailable("every generation slot is busy and the queue is full; retry later",
                                        "queue_full"));
  }
  ReplyMeta meta{ep, new_reply_id(ep), st.model_id, (int64_t)std::time(nullptr)};
  if (!r.stream) {
    // Runs to the end even if the client leaves: httplib cannot tell us before we write.
    std::string text, finish;
    std::vector<TokenLogprob> lps;
    while (finish.empty()) {
      std::vector<GenerationEvent> events;
      job->wait(&events, std::chrono::milliseconds(1000));
      for (GenerationEvent& e : events) {
        if (e.error) return reply_error(res, *e.error);
        text += e.text;
        lps.insert(lps.end(), e.logprobs.begin(), e.logprobs.end());
        if (!e.finish_reason.empty()) finish = e.finish_reason;
      }
    }
    t_req.completion_tokens = job->completion_tokens();
    int64_t offset = 0;
    json lp = r.logprobs >= 0 ? logprobs_json(ep, lps, *st.tok, &offset) : json(nullptr);
    reply_json(res, 200, dump(full_reply(meta, text, lp, finish, {n_prompt, job->completion_tokens()})));
    return;
  }
  auto s = std::make_shared<Stream>();
  s->job = job;
  s->meta = meta;
  s->tok = st.tok;
  s->want_logprobs = r.logprobs >= 0;
  s->include_usage = r.include_usage;
  s->prompt_tokens = n_prompt;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [s](size_t, httplib::DataSink& sink) { return pump(*s, sink); },
      [s](bool) { s->job->cancel(); });  // a no-op when it finished; frees the slot when the client left
}

std::string endpoint_label(const std::string& path) {
  for (const char* p : {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "/",
                        "/api/v1/state"})
    if (path == p) return path;
  return "other";
}

}  // namespace

void add_api_routes(httplib::Server& server, ApiState& st) {
  server.Post("/v1/chat/completions", [&st](const httplib::Request& req, httplib::Response& res) {
    handle_generation(st, Endpoint::Chat, req, res);
  });
  server.Post("/v1/completions", [&st](const httplib::Request& req, httplib::Response& res) {
    handle_generation(st, Endpoint::Completion, req, res);
  });
  // llama-server's older spelling.
  server.Post("/completions", [&st](const httplib::Request& req, httplib::Response& res) {
    handle_generation(st, Endpoint::Completion, req, res);
  });
  server.Get("/v1/models", [&st](const httplib::Request&, httplib::Response& res) {
    json data = json::array();
    if (st.ready) {
      data.push_back({{"id", st.model_id},
                      {"object", "model"},
                      {"created", st.created},
                      {"owned_by", "engine"},
                      {"meta", {{"n_ctx", st.engine->n_ctx()}, {"n_vocab", st.tok->n_vocab()}}}});
    }
    reply_json(res, 200, dump({{"object", "list"}, {"data", data}}));
  });
  server.Get("/health", [&st](const httplib::Request&, httplib::Response& res) {
    if (!st.ready) return reply_error(res, unavailable("Loading model", "model_loading"));
    reply_json(res, 200, R"({"status":"ok"})");
  });
  server.Get("/metrics", [&st](const httplib::Request&, httplib::Response& res) {
    res.set_content(st.metrics ? st.metrics->render() : "", "text/plain; version=0.0.4; charset=utf-8");
  });
}

void add_local_index_route(httplib::Server& server, ApiState& st) {
  server.Get("/", [&st](const httplib::Request&, httplib::Response& res) {
    std::string model = st.ready ? xml_escape(st.model_id) : "(loading)";
    std::string detail;
    if (st.ready) {
      detail = "context " + std::to_string(st.engine->n_ctx()) + " tokens, vocabulary " +
               std::to_string(st.tok->n_vocab()) + ", local model";
    }
    std::string page =
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>engine api</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}code{background:#eee;padding:0 .3em}</style>"
        "</head><body><h1>engine api</h1><p id=\"model\"><b>" + model + "</b> " + detail + "</p>"
        "<p>OpenAI-compatible endpoints: <code>POST /v1/chat/completions</code>, <code>POST /v1/completions</code>, "
        "<code>GET /v1/models</code>; <code>GET /health</code>, <code>GET /metrics</code> (Prometheus). "
        "Started without <code>--swarm</code>, so there is no swarm to show here.</p></body></html>";
    res.set_content(page, "text/html; charset=utf-8");
  });
}

void add_request_log(httplib::Server& server, Metrics* metrics, size_t max_body_bytes) {
  if (metrics) {
    metrics->counter("engine_api_requests_total", "HTTP requests by endpoint and status");
    metrics->histogram("engine_api_request_seconds", "HTTP request time, streaming included",
                       {0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300});
  }
  server.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    t_req = RequestInfo{true, Clock::now()};
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server.set_error_handler([max_body_bytes](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own error
    ApiError e;
    e.status = res.status;
    if (res.status == 404) {
      e.message = "no route for " + req.method + " " + req.path;
      e.code = "not_found";
    } else if (res.status == 413) {
      e.message = "the request body is larger than " + std::to_string(max_body_bytes) + " bytes";
      // httplib caps form-encoded bodies at 8 KiB: what `curl -d` sends without a Content-Type.
      if (req.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0)
        e.message += " (or 8192 for form-encoded ones: send Content-Type: application/json)";
      e.code = "request_too_large";
    } else {
      e.message = "HTTP error " + std::to_string(res.status);
    }
    reply_json(res, res.status, e.to_json());
  });
  server.set_logger([metrics](const httplib::Request& req, const httplib::Response& res) {
    RequestInfo info = t_req;
    t_req = RequestInfo{};
    double secs = info.valid ? std::chrono::duration<double>(Clock::now() - info.start).count() : 0;
    std::string ep = endpoint_label(req.path);
    if (metrics) {
      metrics->add("engine_api_requests_total", 1, {{"endpoint", ep}, {"status", std::to_string(res.status)}});
      if (info.valid) metrics->observe("engine_api_request_seconds", secs, {{"endpoint", ep}});
    }
    std::string tokens;
    if (info.prompt_tokens >= 0) tokens += " prompt " + std::to_string(info.prompt_tokens);
    if (info.completion_tokens >= 0) tokens += " generated " + std::to_string(info.completion_tokens);
    std::fprintf(stderr, "api: %s %s %d%s %.3f s %s\n", req.method.c_str(), req.path.c_str(), res.status,
                 tokens.c_str(), secs, req.remote_addr.c_str());
  });
}

}  // namespace engine::web
