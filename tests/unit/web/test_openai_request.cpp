#include <gtest/gtest.h>

#include "web/openai_request.h"

using namespace engine;
using namespace engine::web;

static GenerationRequest ok(Endpoint ep, const std::string& body) {
  ParseResult r = parse_generation_request(ep, body);
  if (auto* e = std::get_if<ApiError>(&r)) ADD_FAILURE() << body << " -> " << e->message;
  return std::holds_alternative<GenerationRequest>(r) ? std::get<GenerationRequest>(r) : GenerationRequest{};
}

static ApiError err(Endpoint ep, const std::string& body) {
  ParseResult r = parse_generation_request(ep, body);
  if (!std::holds_alternative<ApiError>(r)) {
    ADD_FAILURE() << body << " was accepted";
    return {};
  }
  return std::get<ApiError>(r);
}

TEST(OpenAIRequest, ChatFields) {
  GenerationRequest r = ok(Endpoint::Chat, R"({"model":"m","messages":[{"role":"developer","content":"be brief"},
    {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]},
    {"role":"assistant","content":null}],"max_completion_tokens":7,"temperature":0,"top_p":0.5,"top_k":3,
    "min_p":0.1,"seed":42,"stop":["\n","END"],"stream":true,"stream_options":{"include_usage":true},
    "logprobs":true,"top_logprobs":3,"frequency_penalty":0,"user":"x"})");
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "hi there");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_EQ(r.sampling.temperature, 0.f);
  EXPECT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 3);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.logprobs, 3);
}

TEST(OpenAIRequest, Defaults) {
  SamplingParams d;
  d.temperature = 0.25f;
  ParseResult pr = parse_generation_request(Endpoint::Completion, R"({"prompt":"x","seed":-1})", d);
  ASSERT_TRUE(std::holds_alternative<GenerationRequest>(pr));
  const GenerationRequest& r = std::get<GenerationRequest>(pr);
  EXPECT_EQ(r.max_tokens, 16);  // OpenAI's completions default
  EXPECT_EQ(r.sampling.temperature, 0.25f);  // the server's flag
  EXPECT_EQ(r.sampling.seed, 0xFFFFFFFFu);
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_EQ(ok(Endpoint::Chat, R"({"messages":[{"role":"user","content":"x"}]})").max_tokens, -1);
  EXPECT_EQ(ok(Endpoint::Completion, R"({"prompt":"x","n_predict":-1})").max_tokens, -1);
  EXPECT_EQ(ok(Endpoint::Completion, R"({"prompt":"x","max_tokens":null})").max_tokens, 16);
}

TEST(OpenAIRequest, PromptShapes) {
  EXPECT_EQ(ok(Endpoint::Completion, R"({"prompt":["one"]})").prompt, "one");
  GenerationRequest t = ok(Endpoint::Completion, R"({"prompt":[1,2,3]})");
  EXPECT_TRUE(t.prompt_is_tokens);
  EXPECT_EQ(t.prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(ok(Endpoint::Completion, R"({"prompt":[[4,5]]})").prompt_tokens, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(ok(Endpoint::Completion, R"({"prompt":"x","logprobs":2})").logprobs, 2);
  EXPECT_EQ(ok(Endpoint::Completion, R"({"prompt":"x","n_probs":4})").logprobs, 4);
  EXPECT_EQ(ok(Endpoint::Completion, R"({"prompt":"x","stop":"s"})").stop, std::vector<std::string>{"s"});
  EXPECT_TRUE(ok(Endpoint::Completion, R"({"prompt":"x","stop":""})").stop.empty());
}

TEST(OpenAIRequest, RefusesBadInput) {
  struct Case {
    Endpoint ep;
    const char* body;
    const char* param;
  };
  const Case cases[] = {
      {Endpoint::Chat, "", ""},
      {Endpoint::Chat, "{", ""},
      {Endpoint::Chat, "[]", ""},
      {Endpoint::Chat, "{}", "messages"},
      {Endpoint::Chat, R"({"messages":[]})", "messages"},
      {Endpoint::Chat, R"({"messages":"hi"})", "messages"},
      {Endpoint::Chat, R"({"messages":[{"content":"x"}]})", "messages[0].role"},
      {Endpoint::Chat, R"({"messages":[{"role":"tool","content":"x"}]})", "messages[0].role"},
      {Endpoint::Chat, R"({"messages":[{"role":"user","content":5}]})", "messages[0].content"},
      {Endpoint::Chat, R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", "messages[0].content"},
      {Endpoint::Chat, R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "top_logprobs"},
      {Endpoint::Chat, R"({"messages":[{"role":"user","content":"x"}],"logprobs":1})", "logprobs"},
      {Endpoint::Completion, R"({"prompt":1})", "prompt"},
      {Endpoint::Completion, R"({"prompt":["a","b"]})", "prompt"},
      {Endpoint::Completion, R"({"prompt":[-1]})", "prompt"},
      {Endpoint::Completion, R"({"prompt":[1.5]})", "prompt"},
      {Endpoint::Completion, R"({"prompt":"x","max_tokens":-1})", "max_tokens"},
      {Endpoint::Completion, R"({"prompt":"x","max_tokens":"10"})", "max_tokens"},
      {Endpoint::Completion, R"({"prompt":"x","max_tokens":1e300})", "max_tokens"},
      {Endpoint::Completion, R"({"prompt":"x","max_tokens":18446744073709551615})", "max_tokens"},
      {Endpoint::Completion, R"({"prompt":"x","temperature":-0.5})", "temperature"},
      {Endpoint::Completion, R"({"prompt":"x","top_p":2})", "top_p"},
      {Endpoint::Completion, R"({"prompt":"x","top_k":-2})", "top_k"},
      {Endpoint::Completion, R"({"prompt":"x","seed":"s"})", "seed"},
      {Endpoint::Completion, R"({"prompt":"x","stop":[1]})", "stop"},
      {Endpoint::Completion, R"({"prompt":"x","stream":"yes"})", "stream"},
      {Endpoint::Completion, R"({"prompt":"x","stream_options":[]})", "stream_options"},
      {Endpoint::Completion, R"({"prompt":"x","n":2})", "n"},
      {Endpoint::Completion, R"({"prompt":"x","model":7})", "model"},
      {Endpoint::Completion, R"({"prompt":"x","echo":true})", "echo"},
      {Endpoint::Chat, R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]})", "tools"},
      {Endpoint::Completion, R"({"prompt":"x","logprobs":50})", "logprobs"},
  };
  for (const Case& c : cases) {
    ApiError e = err(c.ep, c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_FALSE(e.message.empty()) << c.body;
  }
}

TEST(OpenAIRequest, ErrorObjectAndModelNames) {
  ApiError e = model_not_found("gpt-4");
  EXPECT_EQ(e.status, 404);
  EXPECT_EQ(e.to_json(),
            R"x({"error":{"code":"model_not_found","message":"The model 'gpt-4' does not exist (see GET /v1/models)",)x"
            R"x("param":"model","type":"invalid_request_error"}})x");
  ApiError plain;
  plain.message = "bad \xff byte";  // invalid UTF-8 must not break the JSON
  EXPECT_NE(plain.to_json().find(R"("param":null)"), std::string::npos);
  std::vector<std::string> served = {"stories", "/m/stories.gguf"};
  EXPECT_TRUE(model_name_matches("", served));
  EXPECT_TRUE(model_name_matches("stories", served));
  EXPECT_TRUE(model_name_matches("stories.gguf", served));
  EXPECT_TRUE(model_name_matches("/m/stories.gguf", served));
  EXPECT_FALSE(model_name_matches("gpt-4", served));
}
