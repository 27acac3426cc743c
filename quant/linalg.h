// Dense symmetric linear algebra in double for the quantizer: Cholesky
// factorisation and the inverse of an SPD matrix. Matrices are row-major n×n.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace engine::linalg {

// A = L Lᵀ; L overwrites the lower triangle of `a` (the upper is zeroed).
// Returns false when A is not positive definite.
bool cholesky_lower(std::vector<double>& a, int64_t n, ThreadPool& pool);

// A⁻¹ of an SPD matrix, via its Cholesky factor. Returns false when A is not SPD.
bool spd_inverse(std::vector<double>& a, int64_t n, ThreadPool& pool);

// A = Uᵀ U with U upper triangular; U overwrites `a` (the lower is zeroed).
bool cholesky_upper(std::vector<double>& a, int64_t n, ThreadPool& pool);

}  // namespace engine::linalg
