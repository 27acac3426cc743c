// Chat-template families, detected and rendered the way llama.cpp's
// llm_chat_detect_template / llm_chat_apply_template do, so prompts are
// byte-identical to what llama.cpp would feed the same model.
#include "models/chat_template.h"

#include <sstream>

#include "core/error.h"

namespace engine {

namespace {

enum class Family {
  Unknown,
  ChatML,
  Llama2,
  Llama2Sys,
  Llama2SysBos,
  Llama2SysStrip,
  MistralV1,
  MistralV3,
  MistralV3Tekken,
  MistralV7,
  Phi3,
  Zephyr,
  Gemma,
  Llama3,
};

struct Named {
  const char* name;
  Family family;
};
constexpr Named kNames[] = {
    {"chatml", Family::ChatML},
    {"llama2", Family::Llama2},
    {"llama2-sys", Family::Llama2Sys},
    {"llama2-sys-bos", Family::Llama2SysBos},
    {"llama2-sys-strip", Family::Llama2SysStrip},
    {"mistral-v1", Family::MistralV1},
    {"mistral-v3", Family::MistralV3},
    {"mistral-v3-tekken", Family::MistralV3Tekken},
    {"mistral-v7", Family::MistralV7},
    {"phi3", Family::Phi3},
    {"zephyr", Family::Zephyr},
    {"gemma", Family::Gemma},
    {"llama3", Family::Llama3},
};

Family detect(const std::string& t) {
  for (const Named& n : kNames)
    if (t == n.name) return n.family;
  const auto has = [&](const char* s) { return t.find(s) != std::string::npos; };
  // The order matters: it is llama.cpp's, and some markers appear in several families.
  if (has("<|im_start|>")) {
    // Phi-4 (<|im_sep|>) and SmolVLM use <|im_start|> differently.
    return has("<|im_sep|>") || has("<end_of_utterance>") ? Family::Unknown : Family::ChatML;
  }
  if (t.rfind("mistral", 0) == 0 || has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) return Family::MistralV7;
    if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) {
      if (has(" [INST]")) return Family::MistralV1;
      if (has("\"[INST]\"")) return Family::MistralV3Tekken;
      return Family::MistralV3;
    }
    if (has("content.strip()")) return Family::Llama2SysStrip;
    if (has("bos_token + '[INST]")) return Family::Llama2SysBos;
    if (has("<<SYS>>")) return Family::Llama2Sys;
    return Family::Llama2;
  }
  if (has("<|assistant|>") && has("<|end|>")) return Family::Phi3;
  if (has("[gMASK]<sop>")) return Family::Unknown;  // GLM
  if (has("<|user|>")) return Family::Zephyr;
  if (has("bos_token + message['role']")) return Family::Unknown;  // Monarch
  if (has("<start_of_turn>")) return Family::Gemma;
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) return Family::Llama3;
  return Family::Unknown;
}

const char* family_name(Family f) {
  for (const Named& n : kNames)
    if (n.family == f) return n.name;
  return "";
}

std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(ws);
  return s.substr(a, b - a + 1);
}

void render_llama2(std::ostringstream& ss, Family f, const std::vector<ChatMessage>& msgs) {
  const bool system_block = f == Family::Llama2Sys || f == Family::Llama2SysBos || f == Family::Llama2SysStrip;
  const bool bos_in_history = f == Family::Llama2SysBos;
  const bool strip = f == Family::Llama2SysStrip;
  bool in_turn = true;  // the first [INST] follows the BOS the tokenizer adds
  ss << "[INST] ";
  for (const ChatMessage& m : msgs) {
    const std::string content = strip ? trim(m.content) : m.content;
    if (!in_turn) {
      in_turn = true;
      ss << (bos_in_history ? "<s>[INST] " : "[INST] ");
    }
    if (m.role == "system") {
      // Without <<SYS>> support the system text still leads the first turn.
      if (system_block) ss << "<<SYS>>\n" << content << "\n<</SYS>>\n\n";
      else ss << content << "\n";
    } else if (m.role == "user") {
      ss << content << " [/INST]";
    } else {
      ss << content << "</s>";
      in_turn = false;
    }
  }
}

void render_mistral(std::ostringstream& ss, Family f, const std::vector<ChatMessage>& msgs) {
  const std::string lead = f == Family::MistralV1 ? " " : "";
  const std::string trail = f == Family::MistralV3Tekken ? "" : " ";
  const bool trim_assistant = f == Family::MistralV3;
  bool in_turn = false;
  for (const ChatMessage& m : msgs) {
    if (!in_turn) {
      ss << lead << "[INST]" << trail;
      in_turn = true;
    }
    if (m.role == "system") {
      ss << m.content << "\n\n";
    } else if (m.role == "user") {
      ss << m.content << lead << "[/INST]";
    } else {
      ss << trail << (trim_assistant ? trim(m.content) : m.content) << "</s>";
      in_turn = false;
    }
  }
}

}  // namespace

std::string chat_template_family(const std::string& tmpl) { return family_name(detect(tmpl)); }

std::string apply_chat_template(const std::string& tmpl, const std::vector<ChatMessage>& msgs,
                                bool add_assistant_prompt) {
  const Family f = detect(tmpl);
  if (f == Family::Unknown) {
    std::string names;
    for (const Named& n : kNames) names += std::string(names.empty() ? "" : ", ") + n.name;
    throw Error(tmpl.empty() ? "no chat template (the model has none; give one by name: " + names + ")"
                             : "unsupported chat template; supported families: " + names);
  }
  std::ostringstream ss;
  switch (f) {
    case Family::ChatML:
      for (const ChatMessage& m : msgs) ss << "<|im_start|>" << m.role << "\n" << m.content << "<|im_end|>\n";
      if (add_assistant_prompt) ss << "<|im_start|>assistant\n";
      break;
    case Family::Llama2:
    case Family::Llama2Sys:
    case Family::Llama2SysBos:
    case Family::Llama2SysStrip:
      render_llama2(ss, f, msgs);  // the reply follows [/INST] directly: no assistant header
      break;
    case Family::MistralV1:
    case Family::MistralV3:
    case Family::MistralV3Tekken:
      render_mistral(ss, f, msgs);
      break;
    case Family::MistralV7:
      for (const ChatMessage& m : msgs) {
        if (m.role == "system") ss << "[SYSTEM_PROMPT] " << m.content << "[/SYSTEM_PROMPT]";
        else if (m.role == "user") ss << "[INST] " << m.content << "[/INST]";
        else ss << " " << m.content << "</s>";
      }
      break;
    case Family::Phi3:
      for (const ChatMessage& m : msgs) ss << "<|" << m.role << "|>\n" << m.content << "<|end|>\n";
      if (add_assistant_prompt) ss << "<|assistant|>\n";
      break;
    case Family::Zephyr:
      for (const ChatMessage& m : msgs) ss << "<|" << m.role << "|>\n" << m.content << "<|endoftext|>\n";
      if (add_assistant_prompt) ss << "<|assistant|>\n";
      break;
    case Family::Gemma: {
      // Gemma has no system role: the system text is prepended to the next user turn.
      std::string system;
      for (const ChatMessage& m : msgs) {
        if (m.role == "system") {
          system += trim(m.content);
          continue;
        }
        const std::string role = m.role == "assistant" ? "model" : m.role;
        ss << "<start_of_turn>" << role << "\n";
        if (!system.empty() && role != "model") {
          ss << system << "\n\n";
          system.clear();
        }
        ss << trim(m.content) << "<end_of_turn>\n";
      }
      if (add_assistant_prompt) ss << "<start_of_turn>model\n";
      break;
    }
    case Family::Llama3:
      for (const ChatMessage& m : msgs)
        ss << "<|start_header_id|>" << m.role << "<|end_header_id|>\n\n" << trim(m.content) << "<|eot_id|>";
      if (add_assistant_prompt) ss << "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case Family::Unknown:
      break;
  }
  return ss.str();
}

}  // namespace engine
