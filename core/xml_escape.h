// Text for HTML and SVG (XML) documents: the characters markup would read as
// syntax become entities, so names written by users or peers stay text.
#pragma once
#include <string>

namespace engine {

inline std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

}  // namespace engine
