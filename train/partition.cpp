#include "train/partition.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace engine::train {

std::vector<int> reducer_members(const std::vector<GroupMember>& members) {
  std::vector<int> r;
  for (size_t i = 0; i < members.size(); i++)
    if (!members[i].client_mode) r.push_back((int)i);
  return r;
}

std::vector<int64_t> partition(const std::vector<GroupMember>& members, int64_t n) {
  std::vector<int> red = reducer_members(members);
  const int64_t R = (int64_t)red.size();
  std::vector<int64_t> offsets(R + 1, 0);
  if (R == 0 || n <= 0) return offsets;

  std::vector<double> bw(R);
  for (int64_t j = 0; j < R; j++) {
    double b = members[red[j]].bandwidth;
    bw[j] = std::isfinite(b) && b > 0 ? b : 0.0;
  }
  double total = std::accumulate(bw.begin(), bw.end(), 0.0);
  if (total <= 0) std::fill(bw.begin(), bw.end(), 1.0), total = (double)R;

  // One element each first (when there are enough), the rest in proportion.
  const int64_t base = n >= R ? 1 : 0;
  const int64_t rest = n - base * R;
  std::vector<int64_t> size(R);
  std::vector<std::pair<double, int64_t>> remainder(R);  // (fraction, -index): ties go to the lower index
  int64_t given = 0;
  for (int64_t j = 0; j < R; j++) {
    double share = (double)rest * (bw[j] / total);
    int64_t whole = std::min<int64_t>((int64_t)std::floor(share), rest - given);
    size[j] = base + whole;
    given += whole;
    remainder[j] = {share - (double)whole, -j};
  }
  std::sort(remainder.begin(), remainder.end(), std::greater<>());
  for (int64_t k = 0; given < rest; k = (k + 1) % R, given++) size[-remainder[k].second]++;

  for (int64_t j = 0; j < R; j++) offsets[j + 1] = offsets[j] + size[j];
  return offsets;
}

}  // namespace engine::train
