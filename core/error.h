// Errors that reach the user. Every message is already phrased for them:
// the CLI prints "error: <what>" and exits 1.
#pragma once
#include <stdexcept>
#include <string>

namespace engine {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An error about a file: the message becomes "<path>: <what is wrong>".
inline Error file_error(const std::string& path, const std::string& what) {
  return Error(path + ": " + what);
}

}  // namespace engine
