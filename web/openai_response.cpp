#include "web/openai_response.h"

#include <atomic>
#include <chrono>
#include <random>

namespace engine::web {

using json = nlohmann::json;

std::string new_reply_id(Endpoint ep) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08llx%08llx", (unsigned long long)(salt & 0xffffffffu),
                (unsigned long long)counter.fetch_add(1));
  std::string id = ep == Endpoint::Chat ? "chatcmpl-" : "cmpl-";
  id += buf;
  return id;
}

static json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

static json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back((int)c);
  return b;
}

json logprobs_json(Endpoint ep, const std::vector<TokenLogprob>& lps, const Tokenizer& tok, int64_t* offset) {
  if (ep == Endpoint::Chat) {
    json content = json::array();
    for (const TokenLogprob& lp : lps) {
      std::string piece = tok.token_to_piece(lp.token, true);
      json top = json::array();
      for (auto& [id, l] : lp.top) {
        std::string p = tok.token_to_piece(id, true);
        top.push_back({{"token", p}, {"logprob", l}, {"bytes", bytes_of(p)}});
      }
      content.push_back({{"token", piece}, {"logprob", lp.logprob}, {"bytes", bytes_of(piece)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_lps = json::array(), tops = json::array(), offsets = json::array();
  for (const TokenLogprob& lp : lps) {
    std::string piece = tok.token_to_piece(lp.token, true);
    tokens.push_back(piece);
    token_lps.push_back(lp.logprob);
    json top = json::object();
    for (auto& [id, l] : lp.top) top[tok.token_to_piece(id, true)] = l;
    tops.push_back(top);
    offsets.push_back(*offset);
    *offset += (int64_t)piece.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

static json head(const ReplyMeta& m, const char* object) {
  return {{"id", m.id}, {"object", object}, {"created", m.created}, {"model", m.model}, {"system_fingerprint", "engine"}};
}

static json reason(const std::string& r) { return r.empty() ? json(nullptr) : json(r); }

json full_reply(const ReplyMeta& m, const std::string& text, const json& logprobs, const std::string& finish_reason,
                const Usage& u) {
  json choice;
  json r;
  if (m.endpoint == Endpoint::Chat) {
    r = head(m, "chat.completion");
    choice = {{"index", 0},
              {"message", {{"role", "assistant"}, {"content", text}}},
              {"logprobs", logprobs},
              {"finish_reason", reason(finish_reason)}};
  } else {
    r = head(m, "text_completion");
    choice = {{"index", 0}, {"text", text}, {"logprobs", logprobs}, {"finish_reason", reason(finish_reason)}};
  }
  r["choices"] = json::array({choice});
  r["usage"] = usage_json(u);
  return r;
}

json stream_chunk(const ReplyMeta& m, const std::string& text, const json& logprobs, const std::string& finish_reason,
                  bool first) {
  json r;
  json choice;
  if (m.endpoint == Endpoint::Chat) {
    r = head(m, "chat.completion.chunk");
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && finish_reason.empty())) delta["content"] = text;
    choice = {{"index", 0}, {"delta", delta}, {"logprobs", logprobs}, {"finish_reason", reason(finish_reason)}};
  } else {
    r = head(m, "text_completion");
    choice = {{"index", 0}, {"text", text}, {"logprobs", logprobs}, {"finish_reason", reason(finish_reason)}};
  }
  r["choices"] = json::array({choice});
  return r;
}

json usage_chunk(const ReplyMeta& m, const Usage& u) {
  json r = head(m, m.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion");
  r["choices"] = json::array();
  r["usage"] = usage_json(u);
  return r;
}

}  // namespace engine::web
