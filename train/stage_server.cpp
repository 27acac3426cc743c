#include "train/stage_server.h"

#include <chrono>
#include <csignal>
#include <cmath>
#include <map>

#include "core/error.h"
#include "train/net_thread.h"
#include "train/progress_tracker.h"
#include "train/stage_compute.h"

namespace engine::train {

namespace {
using Clock = std::chrono::steady_clock;
double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }
// A backward (recompute + input and weight gradients) costs about 2.5 forwards.
constexpr double kBackwardCost = 2.5;
}  // namespace

struct StageServer::Job {
  bool backward = false;
  StageRequest req;
  net::Responder resp;
};

StageServer::StageServer(NetThread& net, Trainer& t, ThreadPool& pool, StageServerConfig cfg)
    : net_(net), t_(t), pool_(pool), cfg_(std::move(cfg)), width_(t.state().params.hp.n_embd) {
  epoch_ = t_.step();
  worker_ = std::thread([this] { worker_main(); });
  const bool ok = net_.run(
      [this](std::function<void()> done) {
        net_.rpc().handle("swarm.fwd", [this](net::Request& r) { on_request(&r, false); });
        net_.rpc().handle("swarm.bwd", [this](net::Request& r) { on_request(&r, true); });
        done();
      },
      10000);
  if (!ok) throw Error("the network thread did not answer");
}

StageServer::~StageServer() {
  net_.run(
      [this](std::function<void()> done) {
        const auto moved = [](net::Request& r) { r.respond(encode_stage_reply(StageStatus::Moved, 0, nullptr, 0, 0, 0, ActDType::F32)); };
        net_.rpc().handle("swarm.fwd", moved);
        net_.rpc().handle("swarm.bwd", moved);
        done();
      },
      10000);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void StageServer::on_request(void* request, bool backward) {
  net::Request& r = *(net::Request*)request;
  auto job = std::make_shared<Job>();
  job->backward = backward;
  try {
    job->req = decode_stage_request(r.args, backward, width_, cfg_.max_n, cfg_.max_n * cfg_.max_windows);
  } catch (const Error& e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      totals_.bad++;
    }
    r.fail(net::ErrorCode::kBadRequest, e.what());
    return;
  }
  if (job->req.run != cfg_.run) {
    r.fail(net::ErrorCode::kBadRequest, "this peer trains run '" + cfg_.run + "', not '" + job->req.run + "'");
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (job->req.stage != cfg_.stage || stopping_) {
    r.respond(encode_stage_reply(StageStatus::Moved, epoch_, nullptr, 0, 0, 0, ActDType::F32));
    return;
  }
  if ((int)queue_.size() >= cfg_.max_queue) {
    r.fail(net::ErrorCode::kOverloaded, "stage queue full");
    return;
  }
  // Only the next epoch ends ours: a claim of a far epoch is not believed (a
  // peer that is really behind catches up through its stage's progress).
  if (job->req.epoch == epoch_ + 1) max_seen_epoch_ = std::max(max_seen_epoch_, job->req.epoch);
  job->resp = r.responder;
  queue_.push_back(std::move(job));
  cv_.notify_all();
}

void StageServer::reply(Job& j, const std::string& body) {
  net::Responder resp = j.resp;
  net_.post([resp, body]() mutable { resp.respond(std::move(body)); });
}

void StageServer::worker_main() {
  for (;;) {
    std::shared_ptr<Job> j;
    StageStatus status = StageStatus::Ok;
    int64_t epoch = 0;
    std::vector<std::shared_ptr<Job>> expired;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return stopping_ || !queue_.empty(); });
      // Requests for an epoch we have not opened yet wait here (not on the wire, not
      // re-sent with their activations) until open() or park_s, then get "wait".
      const double now = now_s();
      while (!parked_.empty() && (stopping_ || now - parked_.front().second > cfg_.park_s)) {
        expired.push_back(parked_.front().first);
        parked_.pop_front();
      }
      if (queue_.empty()) {
        epoch = epoch_;
        lock.unlock();
        for (auto& e : expired)
          reply(*e, encode_stage_reply(stopping_ ? StageStatus::Moved : StageStatus::Wait, epoch, nullptr, 0, 0, 0,
                                       ActDType::F32));
        if (stopping_) return;
        continue;
      }
      j = queue_.front();
      queue_.pop_front();
      const int64_t e = j->req.epoch;
      epoch = epoch_;
      if (stopping_) status = StageStatus::Moved;
      else if (e < epoch_ || (e == epoch_ && !open_ && closed_epoch_ >= e)) status = StageStatus::Stale;
      else if (e == epoch_ && open_) status = StageStatus::Ok;
      else status = StageStatus::Wait;  // ahead of us, or our epoch not open yet
      if (status == StageStatus::Wait && (int)parked_.size() < cfg_.max_queue) {
        parked_.emplace_back(j, now_s());
        j = nullptr;
      }
      if (status == StageStatus::Stale) totals_.stale++;
      if (status == StageStatus::Wait && j) totals_.waits++;
      busy_ = status == StageStatus::Ok;
    }
    for (auto& e : expired) reply(*e, encode_stage_reply(StageStatus::Wait, epoch, nullptr, 0, 0, 0, ActDType::F32));
    if (!j) continue;
    if (status != StageStatus::Ok) {
      reply(*j, encode_stage_reply(status, epoch, nullptr, 0, 0, 0, ActDType::F32));
      continue;
    }
    run_job(*j);
  }
}

void StageServer::run_job(Job& j) {
  const auto t0 = Clock::now();
  StageRequest& q = j.req;
  const ModelParams& p = t_.state().params;
  const int64_t B = q.x.batch, n = q.x.n, d = width_;
  std::vector<float> y;
  std::string body;
  try {
    if (!j.backward) {
      y = q.x.data;
      part_forward(p, y.data(), B, n, pool_);
    } else {
      y = q.dy.data;
      part_backward(p, q.x.data.data(), y.data(), B, n, grad_, pool_);
    }
  } catch (const Error& e) {
    std::lock_guard<std::mutex> lock(mu_);
    busy_ = false;
    idle_cv_.notify_all();
    net::Responder resp = j.resp;
    const std::string why = e.what();
    net_.post([resp, why]() mutable { resp.fail(net::ErrorCode::kInternal, why); });
    return;
  }
  if (cfg_.die_at_epoch >= 0 && q.epoch >= cfg_.die_at_epoch && cfg_.die_in_forward == !j.backward) {
    if (cfg_.log) cfg_.log(std::string("TEST HOOK: SIGKILL in the middle of a ") + (j.backward ? "backward" : "forward") +
                           " of epoch " + std::to_string(q.epoch));
    std::raise(SIGKILL);
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (cfg_.throttle > 1.0) {  // TEST HOOK: a slow peer
    std::this_thread::sleep_for(std::chrono::duration<double>(secs * (cfg_.throttle - 1.0)));
    secs *= cfg_.throttle;
  }
  int64_t reply_batch = B;
  if (cfg_.serve == "nan") y[y.size() / 2] = NAN;  // TEST HOOK: f32 on the wire carries it as is
  if (cfg_.serve == "shape" && B > 1) reply_batch = B - 1;
  body = encode_stage_reply(StageStatus::Ok, q.epoch, y.data(), reply_batch, n, d,
                            cfg_.serve == "nan" ? ActDType::F32 : q.x.dtype);
  {
    std::lock_guard<std::mutex> lock(mu_);
    const double units = (double)B * (j.backward ? kBackwardCost : 1.0);
    const double rate = units / std::max(secs, 1e-6) / (1.0 + kBackwardCost);
    capacity_ = capacity_ > 0 ? 0.7 * capacity_ + 0.3 * rate : rate;
    if (j.backward) {
      totals_.backwards++;
      pending_.samples += q.samples, pending_.tokens += q.tokens;
    } else {
      totals_.forwards++;
    }
    busy_ = false;
  }
  idle_cv_.notify_all();
  reply(j, body);
}

void StageServer::open(int64_t epoch, float* grad) {
  std::lock_guard<std::mutex> lock(mu_);
  epoch_ = epoch;
  open_ = true;
  grad_ = grad;
  pending_ = {};
  // The requests that waited for this epoch go first, in their order.
  while (!parked_.empty()) {
    queue_.push_front(parked_.back().first);
    parked_.pop_back();
  }
  cv_.notify_all();
}

GradientSource::Got StageServer::collect(double wait_s) {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait_for(lock, std::chrono::duration<double>(wait_s), [&] { return pending_.samples > 0 || stopping_; });
  Got g = pending_;
  pending_ = {};
  return g;
}

GradientSource::Got StageServer::close() {
  std::unique_lock<std::mutex> lock(mu_);
  open_ = false;
  closed_epoch_ = epoch_;
  idle_cv_.wait(lock, [&] { return !busy_; });
  grad_ = nullptr;
  Got g = pending_;
  pending_ = {};
  return g;
}

bool StageServer::epoch_over(int64_t epoch) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (max_seen_epoch_ > epoch || trainers_epoch_ > epoch) return true;
    if (now_s() - last_poll_ < cfg_.trainers_poll_s) return false;
    last_poll_ = now_s();
  }
  // No request told us: ask the DHT where most trainers are.
  const std::string key = cfg_.run + ".trainers";
  auto g = await<GlobalProgress>(net_, 5000, [this, key](std::function<void(GlobalProgress)> done) {
    fetch_progress(net_.dht(), key, [done](const GlobalProgress& g) { done(g); });
  });
  if (!g || g->records.empty()) return false;
  std::map<int64_t, int> votes;
  for (auto& r : g->records) votes[r.epoch]++;
  int later = 0;
  for (auto& [e, n] : votes)
    if (e > epoch) later += n;
  const bool over = 2 * later > (int)g->records.size();
  std::lock_guard<std::mutex> lock(mu_);
  if (over) trainers_epoch_ = std::max(trainers_epoch_, epoch + 1);
  return over;
}

double StageServer::capacity() const {
  std::lock_guard<std::mutex> lock(mu_);
  return capacity_;
}

int StageServer::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return (int)queue_.size();
}

StageServer::Totals StageServer::totals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return totals_;
}

}  // namespace engine::train
