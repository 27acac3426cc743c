// Chat templates: family detection from real template snippets and the exact
// prompts llama.cpp renders for one conversation.
#include <gtest/gtest.h>

#include "core/error.h"
#include "models/chat_template.h"

using namespace engine;

namespace {

const std::vector<ChatMessage> kChat = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};

// Fragments of the Jinja templates shipped in popular GGUFs.
const char* kChatMLJinja =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const char* kLlama2Jinja =
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + "
    "' [/INST]' }}{% endif %}{% endfor %}";
// Meta's Llama-2-chat template: <<SYS>> block, BOS before every later turn.
const char* kLlama2ChatJinja =
    "{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}{% endif %}"
    "{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = "
    "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% endif %}"
    "{% endfor %}";
const char* kLlama3Jinja =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
const char* kGemmaJinja =
    "{% for message in messages %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
    "'<end_of_turn>\\n' }}{% endfor %}";
const char* kPhi3Jinja =
    "{% for message in messages %}{{'<|' + message['role'] + '|>' + '\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";
const char* kZephyrJinja =
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + "
    "eos_token }}{% endif %}{% endfor %}";

TEST(ChatTemplate, DetectsFamilies) {
  EXPECT_EQ(chat_template_family(kChatMLJinja), "chatml");
  EXPECT_EQ(chat_template_family(kLlama2Jinja), "llama2");
  EXPECT_EQ(chat_template_family(kLlama2ChatJinja), "llama2-sys-strip");  // content.strip() decides first
  EXPECT_EQ(chat_template_family(kLlama3Jinja), "llama3");
  EXPECT_EQ(chat_template_family(kGemmaJinja), "gemma");
  EXPECT_EQ(chat_template_family(kPhi3Jinja), "phi3");
  EXPECT_EQ(chat_template_family(kZephyrJinja), "zephyr");
  EXPECT_EQ(chat_template_family("llama3"), "llama3");  // by name
  EXPECT_EQ(chat_template_family("{{ messages }}"), "");
}

TEST(ChatTemplate, RendersLikeLlamaCpp) {
  EXPECT_EQ(apply_chat_template(kChatMLJinja, kChat, true),
            "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
            "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
            "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(apply_chat_template(kLlama2Jinja, kChat, true),
            "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an "
            "assistant   </s>[INST] Another question [/INST]");
  EXPECT_EQ(apply_chat_template("llama2-sys-bos", kChat, true),
            "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] Who are "
            "you [/INST]   I am an assistant   </s><s>[INST] Another question [/INST]");
  EXPECT_EQ(apply_chat_template(kLlama2ChatJinja, kChat, true),
            "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are "
            "you [/INST]I am an assistant</s>[INST] Another question [/INST]");
  EXPECT_EQ(apply_chat_template(kLlama3Jinja, kChat, true),
            "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(apply_chat_template(kGemmaJinja, kChat, true),
            "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi "
            "there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an "
            "assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(apply_chat_template(kPhi3Jinja, kChat, true),
            "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi "
            "there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\n"
            "Another question<|end|>\n<|assistant|>\n");
  EXPECT_EQ(apply_chat_template(kZephyrJinja, {{"user", "Hi"}}, true), "<|user|>\nHi<|endoftext|>\n<|assistant|>\n");
}

TEST(ChatTemplate, AssistantPromptIsOptional) {
  const std::vector<ChatMessage> one = {{"user", "Hi"}};
  EXPECT_EQ(apply_chat_template("chatml", one, false), "<|im_start|>user\nHi<|im_end|>\n");
  // A rendering without the prompt is a prefix of the one with it (chat feeds only the new part).
  const std::string with = apply_chat_template(kLlama3Jinja, one, true);
  const std::string without = apply_chat_template(kLlama3Jinja, one, false);
  EXPECT_EQ(with.compare(0, without.size(), without), 0);
}

TEST(ChatTemplate, UnknownTemplateThrows) {
  EXPECT_THROW(apply_chat_template("{{ messages }}", kChat, true), Error);
  EXPECT_THROW(apply_chat_template("", kChat, true), Error);
}

}  // namespace
