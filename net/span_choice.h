// Where a server should sit in the chain (Petals' block selection):
//  - a joining server takes the span whose weakest blocks have the least total
//    throughput (compare the sorted throughputs of each window, pick the least);
//  - a running server moves only when the swarm's minimum block throughput
//    after everyone re-settles would rise enough: it moves when
//    current_min / new_min < balance_quality (0.75 by default).
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "net/server_info.h"

namespace engine::net {

// Total announced throughput of each block over servers joining or online.
// `exclude` (an id) is left out.
std::vector<double> block_throughputs(const ServerMap& servers, int64_t n_blocks, const std::string& exclude = "");

// First block of the best window of `length` blocks given per-block throughputs.
int64_t choose_best_start(const std::vector<double>& throughputs, int64_t length);

// The span [first, first + length) a new server should take.
int64_t choose_span_start(const ServerMap& servers, int64_t n_blocks, int64_t length, const std::string& self = "");

// Whether server `self` (present in `servers`) should move, by Petals'
// should_choose_other_blocks; `rng` shuffles the simulated re-settling.
// `quality_out` gets current_min / new_min when computed (else 1).
bool should_move(const ServerMap& servers, int64_t n_blocks, const std::string& self, double balance_quality,
                 std::mt19937_64& rng, double* quality_out = nullptr);

}  // namespace engine::net
