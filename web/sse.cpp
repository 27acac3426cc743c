#include "web/sse.h"

namespace engine::web {

std::string sse_data(const std::string& payload) {
  std::string s = "data: ";
  // A newline would end the event early; compact JSON escapes them, so this only guards misuse.
  for (char c : payload) s += (c == '\n' || c == '\r') ? ' ' : c;
  s += "\n\n";
  return s;
}

}  // namespace engine::web
