#include "train/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "train/net_thread.h"
#include "train/stage_compute.h"

namespace engine::train {

namespace {
using Clock = std::chrono::steady_clock;
double wall_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
constexpr double kBackwardCost = 2.5;  // a backward's work in forwards (recompute + gradients)
}  // namespace

std::string stage_run(const std::string& run, int64_t stage) { return run + ".s" + std::to_string(stage); }
std::string trainers_run(const std::string& run) { return run + ".trainers"; }

// ---- StageRouter -------------------------------------------------------------------

void StageRouter::update(const std::vector<PeerProgress>& records, double now) {
  std::map<std::string, Peer> next;
  for (const PeerProgress& r : records) {
    if (r.addr.empty()) continue;
    Peer p;
    auto it = peers.find(r.addr);
    if (it != peers.end()) p = it->second;  // keep what we measured, our queue, the ban
    p.addr = r.addr;
    p.announced = r.samples_per_s;
    p.expiration = r.expiration;
    p.epoch = r.epoch;
    next[r.addr] = p;
  }
  // A banned peer stays known (and banned) until its ban ends, even if its record is gone.
  for (auto& [addr, p] : peers)
    if (!next.count(addr) && p.banned_until > now) next[addr] = p;
  peers = std::move(next);
}

std::string StageRouter::pick(double work, const std::set<std::string>& exclude, double now) {
  double fastest = 0;  // work per second of the fastest peer we know of
  for (auto& [a, p] : peers) fastest = std::max(fastest, p.measured > 0 ? p.measured : p.announced * (1 + kBackwardCost));
  if (fastest <= 0) fastest = 1;
  std::string best;
  double best_t = std::numeric_limits<double>::infinity();
  for (auto& [a, p] : peers) {
    if (exclude.count(a) || p.banned_until > now) continue;
    const double rate = p.measured > 0 ? p.measured : fastest;  // untried: assume the best, so it is tried soon
    const double t = (p.queued + work) / rate;
    if (t < best_t) best_t = t, best = a;
  }
  return best;
}

void StageRouter::started(const std::string& addr, double work) {
  auto it = peers.find(addr);
  if (it != peers.end()) it->second.queued += work;
}

void StageRouter::aborted(const std::string& addr, double work) {
  auto it = peers.find(addr);
  if (it != peers.end()) it->second.queued = std::max(0.0, it->second.queued - work);
}

void StageRouter::finished(const std::string& addr, double work, double seconds) {
  auto it = peers.find(addr);
  if (it == peers.end()) return;
  Peer& p = it->second;
  p.queued = std::max(0.0, p.queued - work);
  // Work per second of this call; the peer may have been busy with other trainers'
  // calls too, which is what the expected finish time should see.
  const double rate = work / std::max(seconds, 1e-4);
  p.measured = p.measured > 0 ? 0.7 * p.measured + 0.3 * rate : rate;
}

void StageRouter::failed(const std::string& addr, double now) {
  auto it = peers.find(addr);
  if (it == peers.end()) return;
  it->second.queued = 0;
  it->second.banned_until = std::max(now + 5.0, it->second.expiration);
}

int StageRouter::live(double now) const {
  int n = 0;
  for (auto& [a, p] : peers) n += p.banned_until <= now;
  return n;
}

// ---- Pipeline ----------------------------------------------------------------------

Pipeline::Pipeline(NetThread& net, const ModelParams& trainer_part, ThreadPool& pool, PipelineConfig cfg)
    : net_(net), part_(trainer_part), pool_(pool), cfg_(std::move(cfg)), width_(trainer_part.hp.n_embd) {
  routers_.resize((size_t)cfg_.stages);
  refreshed_at_.assign((size_t)cfg_.stages, -1e9);
}

void Pipeline::refresh(int64_t k, bool force) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!force && wall_s() - refreshed_at_[k] < cfg_.refresh_s) return;
    refreshed_at_[k] = wall_s();
  }
  const std::string key = stage_run(cfg_.run, k);
  auto g = await<GlobalProgress>(net_, 10000, [this, key](std::function<void(GlobalProgress)> done) {
    fetch_progress(net_.dht(), key, [done](const GlobalProgress& g) { done(g); });
  });
  if (!g) return;
  std::lock_guard<std::mutex> lock(mu_);
  routers_[k].update(g->records, wall_s());
}

int Pipeline::live_peers(int64_t stage) {
  refresh(stage, false);
  std::lock_guard<std::mutex> lock(mu_);
  return routers_[stage].live(wall_s());
}

namespace {
struct CallResult {
  bool ok = false;
  std::string error;
  bool overloaded = false;
  bool unreachable = false;  // the connection failed: the peer did not compute it
  StageReply reply;
};
}  // namespace

std::optional<std::vector<float>> Pipeline::call(int64_t k, bool backward, const StageRequest& req, int64_t B,
                                                 int64_t n, bool* stale) {
  const double work = (double)B * (backward ? kBackwardCost : 1.0);
  const std::string body = encode_stage_request(req, backward, cfg_.wire, width_);
  const std::string method = backward ? "swarm.bwd" : "swarm.fwd";
  const auto t_start = Clock::now();
  std::set<std::string> failed_here;
  double pause = 0.02;
  while (seconds_since(t_start) < cfg_.microbatch_timeout_s) {
    refresh(k, false);
    std::string addr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      addr = routers_[k].pick(work, failed_here, wall_s());
      if (!addr.empty()) routers_[k].started(addr, work);
    }
    if (addr.empty()) {  // nobody serves the stage right now: look again shortly
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      refresh(k, true);
      failed_here.clear();
      continue;
    }
    const uint32_t timeout_ms = (uint32_t)(cfg_.call_timeout_s * 1000);
    const int64_t d = width_;
    const auto t0 = Clock::now();
    auto r = await<CallResult>(net_, timeout_ms + 2000, [this, addr, method, body, timeout_ms, B, n, d](
                                                             std::function<void(CallResult)> done) {
      net_.rpc().call(addr, method, body, timeout_ms, [done, B, n, d](const net::Reply& rep) {
        CallResult cr;
        if (!rep.ok()) {
          cr.error = std::string(net::error_code_name(rep.code)) + ": " + rep.message;
          cr.overloaded = rep.code == net::ErrorCode::kOverloaded;
          cr.unreachable = rep.code == net::ErrorCode::kUnavailable;
        } else {
          try {
            cr.reply = decode_stage_reply(*rep.result, B, n, d);
            cr.ok = true;
          } catch (const Error& e) {
            cr.error = std::string("malformed reply: ") + e.what();
          }
        }
        done(std::move(cr));
      });
    });
    const double secs = seconds_since(t0);
    std::unique_lock<std::mutex> lock(mu_);
    totals_.bytes_sent += body.size();
    // Busy or not ready yet (not broken): the same call again shortly, to whichever
    // peer is then the earliest.
    auto back_off = [&] {
      routers_[k].aborted(addr, work);
      totals_.retries++;
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::duration<double>(pause));
      pause = std::min(pause * 2, 0.2);
    };
    if (!r || !r->ok) {
      const std::string why = r ? r->error : "timed out";
      if (r && r->overloaded) {
        back_off();
        continue;
      }
      routers_[k].failed(addr, wall_s());
      totals_.bans++;
      failed_here.insert(addr);
      // A backward that timed out or failed inside the peer may have been added to its
      // gradient: sending it to another peer of the stage could count it twice there.
      // Only one whose connection failed (the peer is gone, and its sum with it) is re-sent.
      const bool resend = !backward || (r && r->unreachable);
      lock.unlock();
      if (cfg_.log)
        cfg_.log("stage " + std::to_string(k) + " peer " + addr + " failed (" + why + "): banned, " +
                 (resend ? "re-routing" : "micro-batch dropped"));
      if (!resend) return std::nullopt;
      std::lock_guard<std::mutex> again(mu_);
      totals_.retries++;
      continue;
    }
    switch (r->reply.status) {
      case StageStatus::Ok:
        routers_[k].finished(addr, work, secs);
        totals_.bytes_received += act_bytes(cfg_.wire, B * n * d);
        return std::move(r->reply.y.data);
      case StageStatus::Stale:
        routers_[k].aborted(addr, work);
        *stale = true;
        return std::nullopt;
      case StageStatus::Wait:
        back_off();
        continue;
      case StageStatus::Moved:
        routers_[k].aborted(addr, work);
        routers_[k].peers.erase(addr);
        failed_here.insert(addr);
        totals_.retries++;
        lock.unlock();
        refresh(k, true);
        continue;
    }
  }
  return std::nullopt;
}

std::optional<Pipeline::Forward> Pipeline::forward(const std::vector<float>& x, int64_t B, int64_t n, int64_t epoch,
                                                   uint64_t mb, bool* stale) {
  Forward f;
  StageRequest req;
  req.run = cfg_.run, req.epoch = epoch, req.micro_batch = mb;
  req.x.batch = B, req.x.n = n, req.x.data = x;
  for (int64_t k = 0; k < cfg_.stages; k++) {
    req.stage = k;
    f.inputs.push_back(req.x.data);
    auto y = call(k, false, req, B, n, stale);
    if (!y) return std::nullopt;
    req.x.data = std::move(*y);
  }
  f.out = std::move(req.x.data);
  return f;
}

bool Pipeline::backward(const Forward& f, std::vector<float>& dy, int64_t B, int64_t n, int64_t epoch, uint64_t mb,
                        int64_t samples, int64_t tokens, bool* stale) {
  StageRequest req;
  req.run = cfg_.run, req.epoch = epoch, req.micro_batch = mb, req.samples = samples, req.tokens = tokens;
  req.x.batch = req.dy.batch = B, req.x.n = req.dy.n = n;
  for (int64_t k = cfg_.stages - 1; k >= 0; k--) {
    req.stage = k;
    req.x.data = f.inputs[k];
    req.dy.data = std::move(dy);
    auto dx = call(k, true, req, B, n, stale);
    if (!dx) return false;
    dy = std::move(*dx);
  }
  return true;
}

double Pipeline::evaluate(const std::vector<Window>& windows, int64_t epoch) {
  if (windows.empty()) return NAN;
  const int64_t n = (int64_t)windows[0].inputs.size(), d = width_;
  double loss = 0;
  int64_t scored = 0;
  for (size_t i = 0; i < windows.size(); i += 8) {
    const std::vector<Window> w(windows.begin() + i, windows.begin() + std::min(windows.size(), i + 8));
    const int64_t B = (int64_t)w.size();
    std::vector<float> x((size_t)(B * n * d));
    embed_windows(part_, w, x.data());
    bool stale = false;
    auto f = forward(x, B, n, epoch, 0, &stale);
    if (!f) return NAN;
    const CrossEntropyResult r = head_loss_and_grad(part_, f->out.data(), w, 0.0f, nullptr, nullptr, pool_);
    loss += r.loss_sum, scored += r.n_scored;
  }
  return scored ? loss / (double)scored : NAN;
}

void Pipeline::count(bool completed, bool stale) {
  std::lock_guard<std::mutex> lock(mu_);
  if (completed) totals_.completed++;
  else if (stale) totals_.dropped_stale++;
  else totals_.dropped_failed++;
}

PipelineTotals Pipeline::totals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return totals_;
}

// ---- TrainerSource -------------------------------------------------------------------

TrainerSource::TrainerSource(Pipeline& pipe, Trainer& t, ThreadPool& pool, int64_t batch, uint64_t data_seed,
                             int inflight, int64_t target_batch)
    : pipe_(pipe), t_(t), pool_(pool), batch_(batch), data_seed_(data_seed), target_batch_(target_batch),
      token_scale_(1.0f / (float)(target_batch * t.config().seqlen)) {
  open_budget_ = target_batch;
  for (int i = 0; i < std::max(1, inflight); i++) threads_.emplace_back([this] { worker_main(); });
}

TrainerSource::~TrainerSource() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& th : threads_) th.join();
}

void TrainerSource::open(int64_t epoch, float* grad) {
  std::lock_guard<std::mutex> lock(mu_);
  open_ = true, draining_ = false, epoch_ = epoch, grad_ = grad, pending_ = {};
  // Until the first look at this epoch's progress: our share at the start of the last one.
  budget_ = open_budget_, since_hint_ = 0, hinted_ = false;
  cv_.notify_all();
}

void TrainerSource::hint_remaining(int64_t samples) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!hinted_) open_budget_ = std::max<int64_t>(samples, batch_), hinted_ = true;
  // `samples` was counted before what we committed since the last hint was published.
  budget_ = samples - since_hint_ - in_pipeline_;
  since_hint_ = 0;
  cv_.notify_all();
}

GradientSource::Got TrainerSource::collect(double wait_s) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::duration<double>(wait_s), [&] { return pending_.samples > 0; });
  Got g = pending_;
  pending_ = {};
  return g;
}

GradientSource::Got TrainerSource::close() {
  // No new micro-batch starts; those in the pipeline finish within this epoch (the
  // stages are still in it: they leave it only when a trainer calls with the next
  // one, after every trainer has averaged), so nothing computed is thrown away.
  std::unique_lock<std::mutex> lock(mu_);
  draining_ = true;
  cv_.wait(lock, [&] { return active_ == 0; });
  open_ = false, draining_ = false;
  grad_ = nullptr;
  Got g = pending_;
  pending_ = {};
  return g;
}

void TrainerSource::worker_main() {
  ThreadPool serial(1);  // several micro-batches run at once; each computes on its own thread
  const ModelParams& p = t_.state().params;
  const int64_t d = p.hp.n_embd, n = t_.config().seqlen;
  for (;;) {
    int64_t e;
    uint64_t mb;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || (open_ && !draining_ && budget_ > 0); });
      if (stopping_) return;
      e = epoch_, mb = next_mb_++;
      active_++;  // close() waits for it: the parameters and grad_ stay ours until then
      in_pipeline_ += batch_, budget_ -= batch_;
    }
    const std::vector<Window> windows = batch_for_step(t_.data(), data_seed_, mb, batch_, n);
    const int64_t B = (int64_t)windows.size();
    std::vector<float> x((size_t)(B * n * d));
    embed_windows(p, windows, x.data());
    bool stale = false, ok = false;
    CrossEntropyResult r;
    std::vector<float> g;
    if (auto f = pipe_.forward(x, B, n, e, mb, &stale)) {
      g.assign((size_t)p.size(), 0.0f);
      std::vector<float> dx((size_t)(B * n * d));
      // Scaled as one process scales a batch of target_batch windows.
      r = head_loss_and_grad(p, f->out.data(), windows, token_scale_, dx.data(), g.data(), serial);
      ok = pipe_.backward(*f, dx, B, n, e, mb, B, r.n_scored, &stale);
      if (ok) embed_backward(p, windows, dx.data(), g.data(), serial);
    }
    pipe_.count(ok, stale);
    std::lock_guard<std::mutex> lock(mu_);
    if (ok) {
      for (size_t i = 0; i < g.size(); i++) grad_[i] += g[i];
      pending_.samples += B, pending_.tokens += r.n_scored, pending_.loss_sum += r.loss_sum;
      since_hint_ += B;
    } else {
      budget_ += batch_;  // dropped: its samples are still missing
    }
    in_pipeline_ -= batch_;
    active_--;
    cv_.notify_all();
  }
}

}  // namespace engine::train
