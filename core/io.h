// Small file helpers: read a whole file, and write one atomically (temp file,
// then rename) so that an interrupted run never leaves a half-written result.
#pragma once
#include <cstddef>
#include <string>

namespace engine {

std::string read_file_bytes(const std::string& path);  // throws Error("<path>: ...")
void write_file_atomic(const std::string& path, const void* data, size_t size);

}  // namespace engine
