// OpenAI-style request bodies (POST /v1/chat/completions, /v1/completions)
// turned into a validated GenerationRequest, or the ApiError to answer with.
// Pure: no model, no I/O, so the fuzzer and unit tests reach every path.
// Unknown fields are ignored (clients send many we do not use); known fields
// of the wrong type or out of range are refused, naming the field.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "models/chat_template.h"
#include "models/sampling.h"

namespace engine::web {

// An OpenAI error object: {"error":{"message","type","param","code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" -> null
  std::string code;   // "" -> null
  std::string to_json() const;
};

enum class Endpoint { Chat, Completion };

struct GenerationRequest {
  Endpoint endpoint = Endpoint::Completion;
  std::string model;                  // "" when not given
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completion, as text
  std::vector<int32_t> prompt_tokens; // completion, as token ids (prompt_is_tokens)
  bool prompt_is_tokens = false;
  int64_t max_tokens = -1;            // -1: until the context is full
  SamplingParams sampling;            // llama-server's defaults where not given
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage
  int logprobs = -1;                  // -1: none; else how many alternatives per token (0..20)
};

using ParseResult = std::variant<GenerationRequest, ApiError>;

// Parses and validates a request body for `ep`; sampling fields not given keep
// `defaults` (the server's sampling flags).
ParseResult parse_generation_request(Endpoint ep, std::string_view body, const SamplingParams& defaults = {});

// The model field against what is served: empty, the served name, the file's
// name (with or without .gguf) pass; anything else is 404 model_not_found.
bool model_name_matches(const std::string& asked, const std::vector<std::string>& served);
ApiError model_not_found(const std::string& asked);

}  // namespace engine::web
