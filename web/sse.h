// Server-sent events as OpenAI streams them: "data: <json>\n\n" per chunk and
// "data: [DONE]\n\n" at the end; comment lines keep an idle stream probed.
#pragma once
#include <string>

namespace engine::web {

std::string sse_data(const std::string& payload);  // payload must hold no newline (compact JSON)
inline std::string sse_done() { return "data: [DONE]\n\n"; }
// A comment line clients ignore; writing it finds out whether the client is still there.
inline std::string sse_keepalive() { return ": keep-alive\n\n"; }

}  // namespace engine::web
