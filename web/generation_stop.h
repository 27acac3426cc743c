// Stop strings over streamed text: text is shown only once it can no longer
// become part of a stop string, and the stop string itself is never shown
// (OpenAI's and llama-server's behaviour).
#pragma once
#include <string>
#include <vector>

namespace engine::web {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Adds generated text; returns the part that is safe to show now. After a
  // stop string is found, returns the text before it and stopped() is true.
  std::string push(const std::string& text);
  bool stopped() const { return stopped_; }
  // At the end of generation without a stop: the text held back.
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string pending_;  // a suffix that is a prefix of some stop string
  bool stopped_ = false;
};

}  // namespace engine::web
