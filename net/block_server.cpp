#include "net/block_server.h"

#include <algorithm>
#include <cstring>

#include "cpu/ops.h"
#include "models/llama_backward.h"
#include "net/hidden_wire.h"

namespace engine::net {

struct BlockServer::Session {
  uint64_t id = 0;
  NodeId owner;
  std::string owner_ip;
  int64_t first = 0, last = 0, max_length = 0, units = 0;
  std::unique_ptr<KVCache> cache;
  uint64_t opened_ms = 0, last_used_ms = 0;
  uint64_t orphaned_ms = 0;  // since when its owner has no connection to us; 0 = connected
  bool busy = false;
};

struct BlockServer::Waiter {
  Responder resp;
  NodeId owner;
  std::string owner_ip;
  int64_t first, last, max_length;
  uint64_t until_ms;
};

struct BlockServer::Job {
  uv_work_t req;
  std::function<void()> work;
  std::function<void(const std::string& error)> after;  // error: what work threw, "" on success
  std::string error;  // what `work` threw
  std::weak_ptr<bool> alive;
  BlockServer* server;
};

BlockServer::BlockServer(Rpc& rpc, std::shared_ptr<const LlamaModel> model, ThreadPool& pool, BlockServerOptions opts)
    : rpc_(rpc), model_(std::move(model)), pool_(pool), opts_(std::move(opts)) {
  rpc_.handle("blocks.info", [this](Request& r) { handle_info(r); });
  rpc_.handle("blocks.open", [this](Request& r) { handle_open(r); });
  rpc_.handle("blocks.step", [this](Request& r) { handle_step(r); });
  rpc_.handle("blocks.close", [this](Request& r) { handle_close(r); });
  rpc_.handle("blocks.forward", [this](Request& r) { handle_forward(r); });
  rpc_.handle("blocks.backward", [this](Request& r) { handle_backward(r); });
  sweep_timer_ = new uv_timer_t;
  uv_timer_init(rpc_.loop(), sweep_timer_);
  sweep_timer_->data = this;
  uv_timer_start(sweep_timer_, [](uv_timer_t* t) { ((BlockServer*)t->data)->sweep(); }, 500, 500);
}

BlockServer::~BlockServer() {
  *alive_ = false;
  stop();
}

void BlockServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  uv_timer_stop(sweep_timer_);
  uv_close((uv_handle_t*)sweep_timer_, [](uv_handle_t* h) { delete (uv_timer_t*)h; });
  for (auto& w : waiters_) w.resp.fail(ErrorCode::kUnavailable, "server is shutting down");
  waiters_.clear();
  sessions_.clear();
  used_units_ = 0;
  for (const char* m : {"blocks.info", "blocks.open", "blocks.step", "blocks.close", "blocks.forward", "blocks.backward"})
    rpc_.handle(m, [](Request& r) { r.fail(ErrorCode::kUnavailable, "server is shutting down"); });
}

int64_t BlockServer::max_length() const {
  int64_t ctx = model_->hparams().n_ctx_train > 0 ? model_->hparams().n_ctx_train : 4096;
  return opts_.max_length > 0 ? std::min(opts_.max_length, ctx) : ctx;
}

int64_t BlockServer::cache_tokens_left() const {
  int64_t total = opts_.cache_tokens * units_per_token();
  return std::max<int64_t>(0, total - used_units_) / std::max<int64_t>(1, units_per_token());
}

void BlockServer::set_model(std::shared_ptr<const LlamaModel> model) {
  for (auto& w : waiters_) w.resp.fail(ErrorCode::kUnavailable, "server is moving to other blocks");
  waiters_.clear();
  sessions_.clear();  // a step in flight keeps its session (and the old model) alive until it ends
  used_units_ = 0;
  model_ = std::move(model);
  if (on_cache_change) on_cache_change();
}

void BlockServer::fail(Request& r, ErrorCode code, const std::string& msg) {
  stats_.errors++;
  r.fail(code, msg);
}

void BlockServer::handle_info(Request& r) {
  Buf b;
  Packer pk(b);
  pk.pack_map(7);
  pack_str(pk, "model"), pack_str(pk, opts_.model_name);
  pack_str(pk, "first"), pk.pack_int64(first());
  pack_str(pk, "last"), pk.pack_int64(last());
  pack_str(pk, "n_embd"), pk.pack_int64(model_->hparams().n_embd);
  pack_str(pk, "cache_tokens_left"), pk.pack_int64(cache_tokens_left());
  pack_str(pk, "max_length"), pk.pack_int64(max_length());
  pack_str(pk, "sessions"), pk.pack_uint64(sessions_.size());
  r.respond(b.s);
}

// The host part of a peer's "ip:port" / "[v6]:port" remote address.
static std::string remote_host(const std::string& remote) {
  try {
    return Address::parse(remote, false).host();
  } catch (const std::exception&) {
    return remote;  // never happens for a connected socket; a key of its own is still a key
  }
}

// Reads an optional "model" field: a request for another model is refused
// rather than run on the wrong weights.
static bool model_matches(const msgpack::object& args, const std::string& name) {
  auto* m = find_field(args, "model");
  return !m || as_str(*m, "model") == name;
}

void BlockServer::handle_open(Request& r) {
  try {
    if (!model_matches(r.args, opts_.model_name)) return fail(r, ErrorCode::kNotFound, "this server serves model " + opts_.model_name);
    Waiter w;
    w.first = as_int(need_field(r.args, "first"), "first");
    w.last = as_int(need_field(r.args, "last"), "last");
    w.max_length = as_int(need_field(r.args, "max_length"), "max_length");
    uint64_t wait_ms = 0;
    if (auto* f = find_field(r.args, "wait_ms")) wait_ms = std::min<uint64_t>(as_uint(*f, "wait_ms"), opts_.max_wait_ms);
    if (w.first < first() || w.last > last() || w.first >= w.last)
      return fail(r, ErrorCode::kNotFound,
                  "blocks " + std::to_string(w.first) + ":" + std::to_string(w.last) + " are not served here (serving " +
                      std::to_string(first()) + ":" + std::to_string(last()) + ")");
    if (w.max_length < 1 || w.max_length > max_length())
      return fail(r, ErrorCode::kBadRequest,
                  "max_length " + std::to_string(w.max_length) + " is outside 1.." + std::to_string(max_length()));
    if (w.max_length * (w.last - w.first) > opts_.cache_tokens * units_per_token())
      return fail(r, ErrorCode::kRejected, "session too long: needs " + std::to_string(w.max_length) +
                                               " cache tokens, this server has " + std::to_string(opts_.cache_tokens) + " in all");
    w.owner = r.peer.id;
    w.owner_ip = remote_host(r.peer.remote);
    // What this id, and everyone at its address, already holds or waits for.
    int mine = 0, ours = 0;
    int64_t my_units = 0, our_units = 0;
    auto count = [&](const NodeId& owner, const std::string& ip, int64_t units) {
      if (owner == w.owner) mine++, my_units += units;
      if (ip == w.owner_ip) ours++, our_units += units;
    };
    for (auto& [id, s] : sessions_) count(s->owner, s->owner_ip, s->units);
    for (auto& q : waiters_) count(q.owner, q.owner_ip, q.max_length * (q.last - q.first));
    if (mine >= opts_.max_sessions_per_peer)
      return fail(r, ErrorCode::kRejected, "too many sessions from this peer (" + std::to_string(mine) + ")");
    if (ours >= opts_.max_sessions_per_ip)
      return fail(r, ErrorCode::kRejected, "too many sessions from this address (" + std::to_string(ours) + ")");
    // Without a share, the whole budget is everyone's (a full cache means waiting, not refusal).
    int64_t share = opts_.max_cache_tokens_per_peer;
    int64_t want = w.max_length * (w.last - w.first);
    if (share > 0 && std::max(my_units, our_units) + want > share * units_per_token())
      return fail(r, ErrorCode::kRejected, "cache share exceeded: one peer or address may hold " +
                                               std::to_string(share) + " cache tokens, this one holds " +
                                               std::to_string(std::max(my_units, our_units) / units_per_token()) +
                                               " and asks for " + std::to_string(want / units_per_token()) + " more");
    w.resp = r.responder;
    w.until_ms = rpc_.now_ms() + wait_ms;
    if (try_open(w)) return;
    if (wait_ms == 0 || waiters_.size() >= (size_t)opts_.max_sessions)
      return fail(r, ErrorCode::kOverloaded, "no cache left (" + std::to_string(cache_tokens_left()) + " tokens free)");
    stats_.waited++;
    waiters_.push_back(std::move(w));  // answered by admit_waiters() or by the sweep at until_ms
  } catch (const BadMessage& e) {
    fail(r, ErrorCode::kBadRequest, e.what());
  }
}

bool BlockServer::try_open(const Waiter& w) {
  int64_t units = w.max_length * (w.last - w.first);
  if ((int)sessions_.size() >= opts_.max_sessions) return false;
  if (used_units_ + units > opts_.cache_tokens * units_per_token()) return false;
  auto s = std::make_shared<Session>();
  do s->id = ((uint64_t)rand() << 32) ^ (uint64_t)rand() ^ ((uint64_t)rpc_.now_ms() << 20);
  while (s->id == 0 || sessions_.count(s->id));
  s->owner = w.owner;
  s->owner_ip = w.owner_ip;
  s->first = w.first, s->last = w.last, s->max_length = w.max_length, s->units = units;
  try {
    s->cache = std::make_unique<KVCache>(model_->hparams(), w.first, w.last, w.max_length, opts_.kv_type);
  } catch (const std::bad_alloc&) {
    const_cast<Responder&>(w.resp).fail(ErrorCode::kOverloaded, "out of memory for the KV cache");
    return true;
  }
  s->opened_ms = s->last_used_ms = rpc_.now_ms();
  used_units_ += units;
  sessions_[s->id] = s;
  stats_.opened++;
  Buf b;
  Packer pk(b);
  pk.pack_map(4);
  pack_str(pk, "session"), pk.pack_uint64(s->id);
  pack_str(pk, "first"), pk.pack_int64(s->first);
  pack_str(pk, "last"), pk.pack_int64(s->last);
  pack_str(pk, "max_length"), pk.pack_int64(s->max_length);
  if (!const_cast<Responder&>(w.resp).respond(b.s)) end_session(s->id, "caller gone");
  if (on_cache_change) on_cache_change();
  return true;
}

void BlockServer::admit_waiters() {
  while (!waiters_.empty()) {
    if (!waiters_.front().resp.alive()) {
      waiters_.pop_front();
      continue;
    }
    if (!try_open(waiters_.front())) break;  // first come, first served
    waiters_.pop_front();
  }
}

void BlockServer::end_session(uint64_t id, const char* why) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  used_units_ -= it->second->units;
  sessions_.erase(it);
  stats_.closed++;
  if (opts_.log && std::strcmp(why, "closed") != 0) opts_.log("session " + std::to_string(id) + " ended: " + why);
  admit_waiters();
  if (on_cache_change) on_cache_change();
}

void BlockServer::handle_close(Request& r) {
  try {
    uint64_t id = as_uint(need_field(r.args, "session"), "session");
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second->owner != r.peer.id) return fail(r, ErrorCode::kNotFound, "unknown session");
    end_session(id, "closed");
    r.respond(empty_map());
  } catch (const BadMessage& e) {
    fail(r, ErrorCode::kBadRequest, e.what());
  }
}

static std::string hidden_result(DType dtype, const std::vector<float>& h, int64_t n, int64_t n_embd, int64_t n_past) {
  Buf b;
  Packer pk(b);
  pk.pack_map(2);
  pack_str(pk, "hidden");
  pack_hidden(pk, dtype, h.data(), n, n_embd);
  pack_str(pk, "position");
  pk.pack_int64(n_past);
  return b.s;
}

void BlockServer::handle_step(Request& r) {
  try {
    uint64_t id = as_uint(need_field(r.args, "session"), "session");
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second->owner != r.peer.id) return fail(r, ErrorCode::kNotFound, "unknown session");
    std::shared_ptr<Session> s = it->second;
    if (s->busy) return fail(r, ErrorCode::kRejected, "session busy: one step at a time");
    TensorView t = unpack_tensor(need_field(r.args, "hidden"));
    int64_t n_embd = model_->hparams().n_embd;
    auto h = std::make_shared<std::vector<float>>();
    int64_t n = 0;
    unpack_hidden(t, n_embd, opts_.max_batch, *h, &n);
    if (auto* p = find_field(r.args, "position")) {
      // The client says where it thinks the sequence is; a mismatch means a lost step.
      int64_t pos = as_int(*p, "position");
      if (pos != s->cache->n_past)
        return fail(r, ErrorCode::kBadRequest, "position " + std::to_string(pos) + " but the session is at " +
                                                   std::to_string(s->cache->n_past));
    }
    if (s->cache->n_past + n > s->max_length)
      return fail(r, ErrorCode::kBadRequest, "too long: session holds " + std::to_string(s->max_length) +
                                                 " positions, " + std::to_string(s->cache->n_past) + " used, step brings " +
                                                 std::to_string(n));
    // Deep prompts (an adapter's per-block prompts): added to this step's first k
    // rows before each block, as in training.
    auto prompts = std::make_shared<std::vector<float>>();
    int64_t k = 0;
    if (auto* f = find_field(r.args, "prompts")) {
      TensorView pv = unpack_tensor(*f);
      if (pv.shape.size() != 3 || pv.shape[0] != s->last - s->first || pv.shape[2] != n_embd || pv.shape[1] < 1 ||
          pv.shape[1] > n)
        return fail(r, ErrorCode::kBadRequest,
                    "prompts must have shape [" + std::to_string(s->last - s->first) + ", k, " +
                        std::to_string(n_embd) + "] with 1 <= k <= " + std::to_string(n));
      k = pv.shape[1];
      *prompts = unpack_batch(pv, n_embd, (s->last - s->first) * k).data;
    }
    s->busy = true;
    s->last_used_ms = rpc_.now_ms();
    DType out_dtype = t.dtype;
    auto model = model_;
    Responder resp = r.responder;
    auto* pool = &pool_;
    uint32_t delay = opts_.step_delay_ms;
    enqueue(
        [s, h, n, model, pool, delay, prompts, k, n_embd] {
          if (delay) uv_sleep(delay);
          if (k == 0) {
            model->forward_span(s->first, s->last, *s->cache, h->data(), n, *pool);
            return;
          }
          for (int64_t blk = s->first; blk < s->last; blk++) {
            cpu::add_inplace(h->data(), prompts->data() + (blk - s->first) * k * n_embd, k * n_embd);
            llama_block_forward(model->hparams(), model->block(blk), *s->cache, blk, h->data(), n, *pool);
          }
          s->cache->n_past += n;
        },
            [this, s, h, n, n_embd, out_dtype, resp](const std::string& err) mutable {
              s->busy = false;
              s->last_used_ms = rpc_.now_ms();
              if (!err.empty()) {
                resp.fail(ErrorCode::kInternal, err);
                end_session(s->id, "compute failed");  // its cache may be half-written
                return;
              }
              byzantine_perturb(opts_.byzantine, stats_.steps, h->data(), n, n_embd, byzantine_rng_);
              stats_.steps++;
              if (opts_.log_steps && opts_.log)
                opts_.log("session " + std::to_string(s->id) + " step: position " + std::to_string(s->cache->n_past));
              resp.respond(hidden_result(out_dtype, *h, n, n_embd, s->cache->n_past));
            });
  } catch (const BadMessage& e) {
    fail(r, ErrorCode::kBadRequest, e.what());
  }
}

struct BlockServer::TrainRequest {
  int64_t a = 0, b = 0, P = 0;
  std::shared_ptr<HiddenBatch> x, grad;  // grad: backward only
  std::shared_ptr<std::vector<float>> prompts;  // [(b-a)][P][n_embd] or empty
};

bool BlockServer::parse_train_request(Request& r, bool backward, TrainRequest& t) {
  try {
    if (!model_matches(r.args, opts_.model_name)) {
      fail(r, ErrorCode::kNotFound, "this server serves model " + opts_.model_name);
      return false;
    }
    t.a = as_int(need_field(r.args, "first"), "first");
    t.b = as_int(need_field(r.args, "last"), "last");
    if (t.a < first() || t.b > last() || t.a >= t.b) {
      fail(r, ErrorCode::kNotFound,
           "blocks " + std::to_string(t.a) + ":" + std::to_string(t.b) + " are not served here (serving " +
               std::to_string(first()) + ":" + std::to_string(last()) + ")");
      return false;
    }
    const int64_t E = model_->hparams().n_embd;
    t.x = std::make_shared<HiddenBatch>(unpack_batch(unpack_tensor(need_field(r.args, "hidden")), E, opts_.max_batch));
    if (t.x->n > max_length()) throw BadMessage("sequences longer than " + std::to_string(max_length()) + " positions");
    if (backward) {
      t.grad = std::make_shared<HiddenBatch>(unpack_batch(unpack_tensor(need_field(r.args, "grad")), E, opts_.max_batch));
      if (t.grad->batch != t.x->batch || t.grad->n != t.x->n) throw BadMessage("grad and hidden differ in shape");
    }
    if (auto* f = find_field(r.args, "prompts")) {
      // Deep prompts of the requested blocks: [(last-first)][P][n_embd], P <= n.
      TensorView pv = unpack_tensor(*f);
      if (pv.shape.size() != 3 || pv.shape[0] != t.b - t.a || pv.shape[2] != E || pv.shape[1] < 1 ||
          pv.shape[1] > t.x->n)
        throw BadMessage("prompts must have shape [" + std::to_string(t.b - t.a) + ", P, " + std::to_string(E) +
                         "] with 1 <= P <= " + std::to_string(t.x->n));
      t.P = pv.shape[1];
      HiddenBatch p = unpack_batch(pv, E, (t.b - t.a) * t.P);
      t.prompts = std::make_shared<std::vector<float>>(std::move(p.data));
    }
  } catch (const BadMessage& e) {
    fail(r, ErrorCode::kBadRequest, e.what());
    return false;
  }
  int& mine = train_jobs_of_[r.peer.id];
  int& ours = train_jobs_at_[remote_host(r.peer.remote)];
  if ((int)train_jobs_.size() >= opts_.max_train_jobs || mine >= opts_.max_train_jobs_per_peer ||
      ours >= opts_.max_train_jobs_per_ip) {
    if (mine == 0) train_jobs_of_.erase(r.peer.id);
    if (ours == 0) train_jobs_at_.erase(remote_host(r.peer.remote));
    fail(r, ErrorCode::kOverloaded, "too many forward/backward requests queued; retry later");
    return false;
  }
  mine++;
  ours++;
  if (opts_.log_steps && opts_.log)
    opts_.log(std::string(backward ? "backward" : "forward") + ": blocks " + std::to_string(t.a) + ":" +
              std::to_string(t.b) + ", " + std::to_string(t.x->batch) + " x " + std::to_string(t.x->n) + " positions");
  return true;
}

bool BlockServer::end_train_job(const NodeId& peer, const std::string& ip, Responder& resp, const std::string& err) {
  if (--train_jobs_of_[peer] <= 0) train_jobs_of_.erase(peer);
  if (--train_jobs_at_[ip] <= 0) train_jobs_at_.erase(ip);
  if (err.empty()) return true;
  resp.fail(ErrorCode::kInternal, err);
  return false;
}

void BlockServer::handle_forward(Request& r) {
  TrainRequest t;
  if (!parse_train_request(r, false, t)) return;
  auto model = model_;
  auto* pool = &pool_;
  Responder resp = r.responder;
  const uint32_t delay = opts_.step_delay_ms;
  const NodeId peer = r.peer.id;
  const std::string ip = remote_host(r.peer.remote);
  enqueue(
      [t, model, pool, delay] {
        if (delay) uv_sleep(delay);
        llama_span_forward_batch(*model, t.a, t.b, t.x->data.data(), t.x->batch, t.x->n,
                                 t.prompts ? t.prompts->data() : nullptr, t.P, *pool);
      },
      [this, t, resp, peer, ip](const std::string& err) mutable {
        if (!end_train_job(peer, ip, resp, err)) return;
        stats_.forwards++;
        const HiddenBatch& x = *t.x;
        Buf b;
        Packer pk(b);
        pk.pack_map(1);
        pack_str(pk, "hidden"), pack_batch(pk, x.dtype, x.data.data(), x.batch, x.n, model_->hparams().n_embd);
        resp.respond(b.s);
      },
      true);
}

void BlockServer::handle_backward(Request& r) {
  TrainRequest t;
  if (!parse_train_request(r, true, t)) return;
  auto model = model_;
  auto* pool = &pool_;
  Responder resp = r.responder;
  const uint32_t delay = opts_.step_delay_ms;
  const NodeId peer = r.peer.id;
  const std::string ip = remote_host(r.peer.remote);
  const int64_t E = model_->hparams().n_embd;
  auto pgrad = std::make_shared<std::vector<float>>(t.prompts ? t.prompts->size() : 0, 0.0f);
  enqueue(
      [t, model, pool, delay, pgrad] {
        if (delay) uv_sleep(delay);
        llama_span_backward_batch(*model, t.a, t.b, t.x->data.data(), t.grad->data.data(), t.x->batch, t.x->n,
                                  t.prompts ? t.prompts->data() : nullptr, t.P,
                                  t.prompts ? pgrad->data() : nullptr, *pool);
      },
      [this, t, resp, peer, ip, pgrad, E](const std::string& err) mutable {
        if (!end_train_job(peer, ip, resp, err)) return;
        stats_.backwards++;
        const HiddenBatch& g = *t.grad;
        Buf b;
        Packer pk(b);
        pk.pack_map(t.prompts ? 2 : 1);
        pack_str(pk, "grad"), pack_batch(pk, g.dtype, g.data.data(), g.batch, g.n, E);
        if (t.prompts) {
          // Prompt gradients are sums over the batch: always f32.
          pack_str(pk, "prompts_grad");
          pack_tensor(pk, DType::F32, {t.b - t.a, t.P, E}, pgrad->data(), pgrad->size() * sizeof(float));
        }
        resp.respond(b.s);
      },
      true);
}

void BlockServer::enqueue(std::function<void()> work, std::function<void(const std::string&)> after, bool training) {
  auto j = std::make_unique<Job>();
  j->work = std::move(work);
  j->after = std::move(after);
  j->alive = alive_;
  j->server = this;
  (training ? train_jobs_ : jobs_).push_back(std::move(j));
  start_next();
}

void BlockServer::start_next() {
  if (running_ || (jobs_.empty() && train_jobs_.empty())) return;
  auto& q = jobs_.empty() ? train_jobs_ : jobs_;
  Job* j = q.front().release();
  q.pop_front();
  running_ = true;
  j->req.data = j;
  uv_queue_work(
      rpc_.loop(), &j->req,
      [](uv_work_t* w) {
        Job* j = (Job*)w->data;
        try {
          j->work();
        } catch (const std::exception& e) {
          j->error = e.what();
          if (j->error.empty()) j->error = "compute failed";
        }
      },
      [](uv_work_t* w, int) {
        std::unique_ptr<Job> j((Job*)w->data);
        if (j->alive.expired()) return;
        BlockServer* s = j->server;
        s->running_ = false;
        if (!j->error.empty()) {
          s->stats_.errors++;
          if (s->opts_.log) s->opts_.log("compute failed: " + j->error);
        }
        j->after(j->error);
        s->start_next();
      });
}

void BlockServer::sweep() {
  uint64_t now = rpc_.now_ms();
  std::vector<uint64_t> dead;
  std::vector<uint64_t> orphans;
  for (auto& [id, s] : sessions_) {
    if (s->busy) continue;
    if (now - s->last_used_ms > opts_.step_timeout_ms) dead.push_back(id);
    else if (now - s->opened_ms > opts_.session_timeout_ms) dead.push_back(id);
    else if (rpc_.peer_connected(s->owner)) s->orphaned_ms = 0;
    else if (!s->orphaned_ms) s->orphaned_ms = now;
    else if (now - s->orphaned_ms > opts_.orphan_timeout_ms) orphans.push_back(id);
  }
  for (uint64_t id : dead) {
    stats_.expired++;
    end_session(id, "timed out");
  }
  for (uint64_t id : orphans) {
    stats_.expired++;
    end_session(id, "its client is gone");
  }
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->until_ms <= now || !it->resp.alive()) {
      it->resp.fail(ErrorCode::kOverloaded, "no cache left: waited for room in vain");
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace engine::net
