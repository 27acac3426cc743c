#include "web/openai_request.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace engine::web {

using json = nlohmann::json;

std::string ApiError::to_json() const {
  json e = {{"message", message}, {"type", type}};
  e["param"] = param.empty() ? json(nullptr) : json(param);
  e["code"] = code.empty() ? json(nullptr) : json(code);
  return json{{"error", e}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

// Thrown inside the parser only; parse_generation_request turns it into an ApiError.
struct Bad {
  std::string param, message;
};

[[noreturn]] void bad(const std::string& param, const std::string& why) {
  std::string m = "'";
  m += param;
  m += "' ";
  m += why;
  throw Bad{param, m};
}

const json* field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return nullptr;  // null means "not given", as OpenAI treats it
  return &*it;
}

double number(const json& v, const char* name, double lo, double hi) {
  if (!v.is_number()) bad(name, "must be a number");
  double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    std::string why = "must be in [";
    why += std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v.dump();
    bad(name, why);
  }
  return d;
}

int64_t integer(const json& v, const char* name, int64_t lo, int64_t hi) {
  if (v.is_number_float()) {  // 16.0 is fine, 16.5 is not
    double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || d < (double)lo || d > (double)hi) bad(name, "must be an integer");
    return (int64_t)d;
  }
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > (uint64_t)std::numeric_limits<int64_t>::max() || (int64_t)u > hi) {
      std::string why = "must be at most ";
      bad(name, why + std::to_string(hi) + ", got " + v.dump());
    }
    return (int64_t)u;
  }
  if (!v.is_number_integer()) bad(name, "must be an integer");
  int64_t i = v.get<int64_t>();
  if (i < lo || i > hi) {
    std::string why = "must be in [";
    why += std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v.dump();
    bad(name, why);
  }
  return i;
}

bool boolean(const json& v, const char* name) {
  if (!v.is_boolean()) bad(name, "must be a boolean");
  return v.get<bool>();
}

// Message content: a string, or an array of parts of which only text parts are understood.
std::string content_text(const json& c, const std::string& param) {
  if (c.is_null()) return "";
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) bad(param, "must be a string or an array of content parts");
  std::string out;
  for (const json& part : c) {
    if (!part.is_object()) bad(param, "parts must be objects");
    auto t = part.find("type");
    if (t == part.end() || !t->is_string()) bad(param, "parts need a string 'type'");
    if (*t != "text") bad(param, "part type " + t->dump() + " is not supported (only \"text\")");
    auto x = part.find("text");
    if (x == part.end() || !x->is_string()) bad(param, "text parts need a string 'text'");
    out += x->get<std::string>();
  }
  return out;
}

void parse_messages(const json& j, GenerationRequest& r) {
  const json* m = field(j, "messages");
  if (!m) bad("messages", "is required");
  if (!m->is_array() || m->empty()) bad("messages", "must be a non-empty array");
  for (size_t i = 0; i < m->size(); i++) {
    const json& msg = (*m)[i];
    std::string p = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) bad(p, "must be an object");
    auto role = msg.find("role");
    if (role == msg.end() || !role->is_string()) bad(p + ".role", "must be a string");
    std::string rs = role->get<std::string>();
    if (rs == "developer") rs = "system";  // OpenAI's newer name for it
    if (rs != "system" && rs != "user" && rs != "assistant")
      bad(p + ".role", "must be system, developer, user or assistant, got " + role->dump());
    auto c = msg.find("content");
    std::string content = c == msg.end() ? "" : content_text(*c, p + ".content");
    r.messages.push_back({rs, content});
  }
}

void parse_prompt(const json& j, GenerationRequest& r) {
  const json* p = field(j, "prompt");
  if (!p) bad("prompt", "is required");
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
    return;
  }
  if (!p->is_array()) bad("prompt", "must be a string, an array of strings or an array of token ids");
  if (p->size() == 1 && (*p)[0].is_string()) {  // ["text"]: one prompt
    r.prompt = (*p)[0].get<std::string>();
    return;
  }
  if (p->size() == 1 && (*p)[0].is_array()) {  // [[ids]]: one prompt of tokens
    p = &(*p)[0];
  }
  r.prompt_is_tokens = true;
  for (const json& t : *p) {
    if (t.is_string()) bad("prompt", "with several prompts is not supported (send one request each)");
    r.prompt_tokens.push_back((int32_t)integer(t, "prompt", 0, std::numeric_limits<int32_t>::max()));
  }
}

void parse_stop(const json& j, GenerationRequest& r) {
  const json* s = field(j, "stop");
  if (!s) return;
  if (s->is_string()) {
    if (!s->get<std::string>().empty()) r.stop.push_back(s->get<std::string>());
    return;
  }
  if (!s->is_array()) bad("stop", "must be a string or an array of strings");
  if (s->size() > 16) bad("stop", "may hold at most 16 strings");
  for (const json& x : *s) {
    if (!x.is_string()) bad("stop", "must be a string or an array of strings");
    if (!x.get<std::string>().empty()) r.stop.push_back(x.get<std::string>());
  }
}

void parse_sampling(const json& j, GenerationRequest& r) {
  SamplingParams& sp = r.sampling;
  if (auto* v = field(j, "temperature")) sp.temperature = (float)number(*v, "temperature", 0, 100);
  if (auto* v = field(j, "top_p")) sp.top_p = (float)number(*v, "top_p", 0, 1);
  if (auto* v = field(j, "top_k")) sp.top_k = (int)integer(*v, "top_k", 0, 1 << 30);
  if (auto* v = field(j, "min_p")) sp.min_p = (float)number(*v, "min_p", 0, 1);
  if (auto* v = field(j, "repeat_penalty")) sp.repeat_penalty = (float)number(*v, "repeat_penalty", 0, 100);
  if (auto* v = field(j, "seed")) {
    // -1 (llama-server) means "random", as does leaving it out.
    int64_t s = integer(*v, "seed", -1, std::numeric_limits<int64_t>::max());
    sp.seed = s < 0 ? 0xFFFFFFFFu : (uint64_t)s;
  }
}

GenerationRequest parse(Endpoint ep, std::string_view body, const SamplingParams& defaults) {
  json j = json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded()) throw Bad{"", "the request body is not valid JSON"};
  if (!j.is_object()) throw Bad{"", "the request body must be a JSON object"};
  GenerationRequest r;
  r.endpoint = ep;
  r.sampling = defaults;
  if (auto* v = field(j, "model")) {
    if (!v->is_string()) bad("model", "must be a string");
    r.model = v->get<std::string>();
  }
  if (ep == Endpoint::Chat)
    parse_messages(j, r);
  else
    parse_prompt(j, r);
  // Completions default to 16 tokens as OpenAI's do; chat runs to the end of the turn.
  if (ep == Endpoint::Completion) r.max_tokens = 16;
  for (const char* name : {"max_tokens", "max_completion_tokens", "n_predict"}) {
    if (auto* v = field(j, name)) {
      // n_predict = -1 is llama-server's "no limit".
      r.max_tokens = integer(*v, name, std::string(name) == "n_predict" ? -1 : 0, 1 << 30);
    }
  }
  if (auto* v = field(j, "n")) {
    if (integer(*v, "n", 1, 128) != 1) bad("n", "must be 1 (one choice per request is supported)");
  }
  parse_sampling(j, r);
  parse_stop(j, r);
  if (auto* v = field(j, "stream")) r.stream = boolean(*v, "stream");
  if (auto* so = field(j, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "must be an object");
    if (auto* v = field(*so, "include_usage")) r.include_usage = boolean(*v, "stream_options.include_usage");
  }
  if (ep == Endpoint::Chat) {
    bool want = false;
    if (auto* v = field(j, "logprobs")) want = boolean(*v, "logprobs");
    int top = 0;
    if (auto* v = field(j, "top_logprobs")) {
      top = (int)integer(*v, "top_logprobs", 0, 20);
      if (!want) bad("top_logprobs", "needs logprobs: true");
    }
    if (want) r.logprobs = top;
  } else if (auto* v = field(j, "logprobs")) {
    r.logprobs = (int)integer(*v, "logprobs", 0, 20);  // completions: how many alternatives
  }
  if (auto* v = field(j, "n_probs")) {  // llama-server's spelling
    int n = (int)integer(*v, "n_probs", 0, 20);
    if (n > 0) r.logprobs = std::max(r.logprobs, n);
  }
  if (auto* v = field(j, "tools"); v && !(v->is_array() && v->empty())) bad("tools", "are not supported");
  if (ep == Endpoint::Completion) {
    if (auto* v = field(j, "echo"); v && boolean(*v, "echo")) bad("echo", "is not supported");
    if (auto* v = field(j, "suffix"); v && !(v->is_string() && v->get<std::string>().empty()))
      bad("suffix", "is not supported");
  }
  return r;
}

}  // namespace

ParseResult parse_generation_request(Endpoint ep, std::string_view body, const SamplingParams& defaults) {
  try {
    return parse(ep, body, defaults);
  } catch (const Bad& b) {
    ApiError e;
    e.message = b.message;
    e.param = b.param;
    return e;
  } catch (const std::exception& x) {  // nlohmann type errors we did not foresee: still the client's fault
    ApiError e;
    e.message = std::string("bad request: ") + x.what();
    return e;
  }
}

bool model_name_matches(const std::string& asked, const std::vector<std::string>& served) {
  if (asked.empty()) return true;
  for (const std::string& s : served) {
    if (asked == s) return true;
    if (asked == s + ".gguf") return true;
  }
  return false;
}

ApiError model_not_found(const std::string& asked) {
  ApiError e;
  e.status = 404;
  e.message = "The model '" + asked + "' does not exist (see GET /v1/models)";
  e.param = "model";
  e.code = "model_not_found";
  return e;
}

}  // namespace engine::web
