// Chat templates: renders a conversation into the prompt text a chat model
// was trained on. Like llama.cpp, the Jinja template stored in the GGUF
// (tokenizer.chat_template) is not executed; its family is recognized by
// telltale substrings and rendered by hand-written code. A template may also
// be given by family name ("chatml", "llama2", "llama3", "mistral-v7", ...).
#pragma once
#include <string>
#include <vector>

namespace engine {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The family name a template (or a family name) is recognized as, or "" when
// it is not one of the supported families.
std::string chat_template_family(const std::string& tmpl);

// Renders msgs; add_assistant_prompt appends the header that starts the
// assistant's reply. BOS is not written (the tokenizer adds it). Throws Error
// for an empty or unrecognized template, naming the supported families.
std::string apply_chat_template(const std::string& tmpl, const std::vector<ChatMessage>& msgs,
                                bool add_assistant_prompt);

}  // namespace engine
