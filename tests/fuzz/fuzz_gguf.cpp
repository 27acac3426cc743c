// libFuzzer target: the GGUF reader must refuse any byte string cleanly
// (an engine::Error), never crash, read out of bounds, or allocate without bound.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "core/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = engine::GGUFFile::from_memory(data, size, "fuzz.gguf");
    // Touch everything the reader exposes, as a user of the file would.
    for (auto& kv : f->metadata()) (void)kv.second.to_string();
    uint8_t sink = 0;
    for (auto& t : f->tensors())
      if (t.nbytes) sink ^= t.data[0] ^ t.data[t.nbytes - 1];
    asm volatile("" : : "r"(sink));  // keep the reads
  } catch (const engine::Error&) {
  }
  return 0;
}
