// libFuzzer target: a model file is untrusted bytes past the GGUF layer too. Loading
// it (hyper-parameters, tensor shapes and types, SpQR layers: permutation, outlier
// rows and columns, statistics codes) must refuse anything inconsistent with an
// engine::Error, and whatever loads must run a forward pass and the head without
// reading out of bounds. Seeds (tests/fuzz/seeds/fuzz_model) are tiny F16, Q8_0 and SpQR
// models made by `engine init-model` and `engine quantize`, see the README there.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/gguf.h"
#include "core/thread_pool.h"
#include "models/llama.h"

using namespace engine;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static ThreadPool pool(1);
  try {
    // A mapped file starts on a page, so its tensors keep the file's alignment; give
    // the bytes the same (libFuzzer's buffer is only 16-byte aligned). The exact size
    // is allocated, so ASan still sees every read past the end.
    void* p = nullptr;
    if (posix_memalign(&p, 64, size ? size : 1) != 0) return 0;
    std::unique_ptr<uint8_t, decltype(&free)> bytes((uint8_t*)p, &free);
    if (size) memcpy(bytes.get(), data, size);
    std::shared_ptr<const GGUFFile> file(GGUFFile::from_memory(bytes.get(), size, "fuzz.gguf"));
    auto model = LlamaModel::load(file);
    const LlamaHParams& hp = model->hparams();
    // Everything loaded lives in the input, so the widths are bounded by its size; the
    // activations below are bounded the same way (n_vocab, n_ff rows of real tensors).
    if (hp.n_vocab <= 0 || hp.n_embd <= 0) return 0;
    const int64_t n = 2;
    KVCache cache(hp, model->first_block(), model->last_block(), n);
    std::vector<float> hidden((size_t)(n * hp.n_embd)), logits((size_t)(n * hp.n_vocab));
    const int32_t tokens[n] = {0, (int32_t)(hp.n_vocab - 1)};
    model->embed(tokens, n, hidden.data());
    model->forward(cache, hidden.data(), n, pool);
    model->head(hidden.data(), n, logits.data(), pool);
    volatile float sink = logits[0] + logits.back();
    (void)sink;
  } catch (const Error&) {
  }
  return 0;
}
