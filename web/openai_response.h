// OpenAI response bodies: whole replies, streamed chunks and their logprobs,
// for chat (chat.completion[.chunk]) and completions (text_completion).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/tokenizer.h"
#include "web/generation_logprobs.h"
#include "web/openai_request.h"

namespace engine::web {

struct ReplyMeta {
  Endpoint endpoint = Endpoint::Completion;
  std::string id;     // "chatcmpl-..." / "cmpl-..."
  std::string model;
  int64_t created = 0;  // unix seconds
};

struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

// A fresh id with the endpoint's prefix.
std::string new_reply_id(Endpoint ep);

// Logprobs in the endpoint's shape; text_offset (completions) starts at *offset and advances it.
nlohmann::json logprobs_json(Endpoint ep, const std::vector<TokenLogprob>& lps, const Tokenizer& tok,
                             int64_t* offset);

// The whole reply (stream: false).
nlohmann::json full_reply(const ReplyMeta& m, const std::string& text, const nlohmann::json& logprobs,
                          const std::string& finish_reason, const Usage& u);
// One streamed chunk: text (chat: the delta; `first` adds the role), logprobs
// (null when not asked) and, in the last, finish_reason.
nlohmann::json stream_chunk(const ReplyMeta& m, const std::string& text, const nlohmann::json& logprobs,
                            const std::string& finish_reason, bool first);
// The extra chunk stream_options.include_usage asks for: no choices, the usage.
nlohmann::json usage_chunk(const ReplyMeta& m, const Usage& u);

}  // namespace engine::web
