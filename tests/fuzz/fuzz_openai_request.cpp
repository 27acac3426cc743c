// libFuzzer target: an HTTP client's request body through the OpenAI request
// parser must give a request or an ApiError, never crash or throw; what it
// accepts must be usable (error JSON renders, stop strings run), and the
// stop-string matcher must never show text past a stop string.
//   first byte even: the rest is a chat request body;
//   first byte odd:  the rest is a completions request body.
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "web/generation_stop.h"
#include "web/openai_request.h"

using namespace engine::web;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Endpoint ep = (data[0] & 1) ? Endpoint::Completion : Endpoint::Chat;
  std::string_view body((const char*)data + 1, size - 1);
  ParseResult r = parse_generation_request(ep, body);
  if (auto* e = std::get_if<ApiError>(&r)) {
    if (e->status < 400 || e->message.empty()) __builtin_trap();
    (void)e->to_json();
    return 0;
  }
  const GenerationRequest& req = std::get<GenerationRequest>(r);
  if (req.max_tokens < -1 || req.logprobs > 20) __builtin_trap();
  // The accepted stop strings over the body's own bytes, in small pieces.
  StopMatcher m(req.stop);
  std::string shown;
  for (size_t i = 0; i < body.size() && !m.stopped(); i += 3) shown += m.push(std::string(body.substr(i, 3)));
  shown += m.flush();
  for (const std::string& s : req.stop)
    if (shown.find(s) != std::string::npos) __builtin_trap();
  return 0;
}
