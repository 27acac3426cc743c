// Small file helpers: read a whole file, and write one atomically (temp file,
// then rename) so that an interrupted run never leaves a half-written result.
#pragma once
#include <cstddef>
#include <string>

namespace engine {

std::string read_file_bytes(const std::string& path);  // throws Error("<path>: ...")
void write_file_atomic(const std::string& path, const void* data, size_t size);

// Secrets (identity keys, swarm keys): written atomically with mode 0600 and
// synced before the rename; read back only if no one but the owner may read
// the file, and at most max_bytes + 1 bytes (so a wrong file is not slurped).
// Errors name `what` and the path.
void write_private_file_atomic(const std::string& path, const std::string& bytes, const char* what);
std::string read_private_file(const std::string& path, size_t max_bytes, const char* what);

}  // namespace engine
