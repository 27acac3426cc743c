// What the CPU we run on can do, detected once at run time (cpuid + xgetbv),
// so kernels built with -mavx2 / -mavx512f are only called where they work.
#pragma once

namespace engine {

struct CpuFeatures {
  bool avx2 = false;    // AVX2 + FMA + F16C (the set our *_avx2.cpp kernels assume)
  bool avx512 = false;  // AVX-512 F/BW/VL/DQ (what *_avx512.cpp kernels assume), OS-enabled
  bool avx512_vnni = false;
  bool avx512_vbmi = false;  // byte permutes (vpermb, vpermt2b, vpmultishiftqb)
  bool avx512_bf16 = false;
  bool avx_vnni = false;  // VEX-encoded VNNI (ymm)
};

// Detected on first use; cheap afterwards.
const CpuFeatures& cpu_features();

}  // namespace engine
