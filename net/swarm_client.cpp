#include "net/swarm_client.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "net/hidden_wire.h"
#include "net/spot_check.h"

namespace engine::net {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string reply_error(const Reply& r) { return std::string(error_code_name(r.code)) + ": " + r.message; }

}  // namespace

SwarmClient::SwarmClient(SwarmClientOptions opts) : opts_(std::move(opts)) {
  if (opts_.initial_peers.empty()) throw Error("--initial-peers is required to use the swarm");
  if (opts_.n_blocks <= 0 || opts_.n_embd <= 0) throw Error("swarm client: model shape unknown");
  if (!wire_dtype_ok(opts_.wire_dtype)) throw Error("hidden states travel as f32, f16 or bf16");
  if (!(opts_.verify_rate >= 0 && opts_.verify_rate <= 1)) throw Error("--verify-rate must be in [0, 1]");
  if (!(opts_.verify_tolerance >= 0)) throw Error("--verify-tolerance must be >= 0");
  verify_rng_.seed(opts_.verify_seed ? opts_.verify_seed : std::random_device{}());
  uv_loop_init(&loop_);
  RpcOptions ro;
  ro.swarm = opts_.swarm;
  ro.identity = opts_.identity;
  ro.swarm_key = opts_.swarm_key;
  rpc_ = std::make_unique<Rpc>(&loop_, ro);
  DhtOptions dopts;
  dopts.rpc_timeout_ms = opts_.rpc_timeout_ms;
  dht_ = std::make_unique<DhtNode>(*rpc_, dopts);
  bool done = false;
  size_t known = 0;
  std::string err;
  dht_->bootstrap(opts_.initial_peers, [&](size_t k, const std::string& e) {
    done = true, known = k, err = e;
  });
  run_until([&] { return done; }, opts_.rpc_timeout_ms * 4 + 1000);
  if (!known) {
    std::string why = err.empty() ? "no answer" : err;
    dht_->stop();
    rpc_->close();
    run_until([] { return false; }, 50);
    throw Error("could not join the swarm through " + opts_.initial_peers[0] + ": " + why);
  }
}

SwarmClient::~SwarmClient() {
  dht_->stop();
  rpc_->close();
  for (int i = 0; i < 1000 && uv_loop_alive(&loop_); i++) uv_run(&loop_, UV_RUN_NOWAIT);
  dht_.reset();
  rpc_.reset();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

bool SwarmClient::run_until(const std::function<bool()>& done, uint32_t timeout_ms) {
  // A timer guarantees uv_run(ONCE) returns even when nothing else is pending.
  uv_timer_t tick;
  uv_timer_init(&loop_, &tick);
  uv_timer_start(&tick, [](uv_timer_t*) {}, 20, 20);
  uint64_t until = uv_now(&loop_) + timeout_ms;
  bool ok = false;
  for (;;) {
    if (done()) {
      ok = true;
      break;
    }
    uv_update_time(&loop_);
    if (uv_now(&loop_) >= until) break;
    uv_run(&loop_, UV_RUN_ONCE);
  }
  uv_close((uv_handle_t*)&tick, nullptr);
  uv_run(&loop_, UV_RUN_NOWAIT);  // lets the timer's close callback run before `tick` goes away
  return ok;
}

void SwarmClient::sleep_ms(uint32_t ms) { run_until([] { return false; }, ms); }

Reply SwarmClient::call(const std::string& addr, const std::string& method, std::string args, uint32_t timeout_ms,
                        std::string* result) {
  bool done = false;
  Reply out;
  rpc_->call(addr, method, std::move(args), timeout_ms, [&](const Reply& r) {
    done = true;
    out.code = r.code;
    out.message = r.message;
    out.peer = r.peer;
    if (r.ok() && result && r.result) *result = pack_object(*r.result);
  });
  if (!run_until([&] { return done; }, timeout_ms + 5000)) {
    out.code = ErrorCode::kDeadlineExceeded;  // the Rpc deadline should have fired first; belt and braces
    out.message = "no reply";
  }
  out.result = nullptr;
  return out;
}

const ServerMap& SwarmClient::refresh() {
  stats_.refreshes++;
  bool done = false;
  ServerMap found;
  fetch_servers(*dht_, opts_.model, opts_.n_blocks, [&](ServerMap m) {
    found = std::move(m);
    done = true;
  });
  run_until([&] { return done; }, opts_.rpc_timeout_ms * 4 + 1000);
  servers_ = std::move(found);
  // Measure the round trip to every online server (and find dead ones before routing through them).
  int pending = 0;
  for (auto& [id, s] : servers_) {
    if (s.state != ServerState::kOnline || banned(id)) continue;
    pending++;
    auto t0 = std::make_shared<double>(now_s());
    std::string sid = id;
    rpc_->call(s.address, "dht.ping", empty_map(), opts_.rpc_timeout_ms, [this, &pending, t0, sid](const Reply& r) {
      pending--;
      if (r.ok()) rtt_[sid] = now_s() - *t0;
      else ban(sid, "ping failed: " + reply_error(r));
    });
  }
  run_until([&] { return pending == 0; }, opts_.rpc_timeout_ms + 1000);
  return servers_;
}

Route SwarmClient::route(int64_t from, int64_t to, RouteMode mode, int64_t cache_tokens_needed) {
  RouteOptions ro;
  ro.mode = mode;
  ro.rtt_s = rtt_;
  ro.cache_tokens_needed = cache_tokens_needed;
  for (auto& [id, s] : servers_)
    if (banned(id)) ro.banned.insert(id);
  return find_route(servers_, from, to, ro);
}

void SwarmClient::ban(const std::string& id, const std::string& why) {
  Ban& b = bans_[id];
  b.failures++;
  uint64_t ms = opts_.ban_base_ms;
  for (int i = 1; i < b.failures && ms < opts_.ban_max_ms; i++) ms *= 2;
  ms = std::min<uint64_t>(ms, opts_.ban_max_ms);
  b.until_ms = uv_now(&loop_) + ms;
  stats_.failures++;
  log("server " + id.substr(0, 8) + " failed (" + why + "); banned for " + std::to_string(ms / 1000.0).substr(0, 4) + " s");
}

bool SwarmClient::banned(const std::string& id) const {
  if (distrusted_.count(id)) return true;
  auto it = bans_.find(id);
  return it != bans_.end() && it->second.until_ms > uv_now(&loop_);
}

bool SwarmClient::draw_verify() {
  if (opts_.verify_rate <= 0) return false;
  return std::uniform_real_distribution<double>(0, 1)(verify_rng_) < opts_.verify_rate;
}

double SwarmClient::verify_tolerance() const {
  return opts_.verify_tolerance > 0 ? opts_.verify_tolerance : spot_check_tolerance(opts_.wire_dtype);
}

void SwarmClient::distrust(const std::string& id, int64_t first, int64_t last, int64_t position,
                           const std::string& why) {
  if (!distrusted_.insert(id).second) return;
  stats_.liars++;
  std::string span = std::to_string(first) + ":" + std::to_string(last);
  std::string line = "spot check: server " + id.substr(0, 8) + " returned wrong hidden states for blocks " + span +
                     " from position " + std::to_string(position) + " (" + why + "); banned for this process";
  if (opts_.warn) opts_.warn(line);
  else log(line);
  // The report: one subkey per reporter (its latest report), signed as "@<id>"
  // subkeys are; readers must not ban on it alone (a Sybil can write many).
  Buf b;
  Packer pk(b);
  pk.pack_map(6);
  pack_str(pk, "accused"), pack_str(pk, id);
  pack_str(pk, "first"), pk.pack_int64(first);
  pack_str(pk, "last"), pk.pack_int64(last);
  pack_str(pk, "position"), pk.pack_int64(position);
  pack_str(pk, "reason"), pack_str(pk, why);
  pack_str(pk, "time"), pk.pack_double(dht_->now());
  bool done = false;
  int stored = 0;
  dht_->put(ban_report_key(opts_.model), "@" + id_hex(), b.s, dht_->now() + kBanReportTtlS,
            [&](int st, int, const LookupStats&) { done = true, stored = st; });
  run_until([&] { return done; }, opts_.rpc_timeout_ms * 4 + 1000);
  log("ban report on " + id.substr(0, 8) + " stored on " + std::to_string(stored) + " DHT nodes");
}

std::string ban_report_key(const std::string& model) { return "_engine.bans." + model; }

// ---------------------------------------------------------------------------

InferenceSession::InferenceSession(SwarmClient& client, int64_t max_length) : c_(client), max_length_(max_length) {
  if (max_length < 1) throw Error("inference session: max_length must be positive");
  if (c_.servers().empty()) c_.refresh();
  spans_ = open_chain(0, c_.options().n_blocks, {}, {});
}

InferenceSession::~InferenceSession() { close(); }

Route InferenceSession::route() const {
  Route r;
  for (auto& s : spans_) r.push_back(s.hop);
  return r;
}

void InferenceSession::close() {
  int pending = 0;
  for (auto& s : spans_) {
    if (s.shadow) close_span(*s.shadow);  // best effort
    s.shadow.reset();
    if (!s.session) continue;
    Buf b;
    Packer pk(b);
    pk.pack_map(1);
    pack_str(pk, "session"), pk.pack_uint64(s.session);
    pending++;
    c_.rpc().call(s.hop.address, "blocks.close", b.s, c_.options().rpc_timeout_ms, [&pending](const Reply&) { pending--; });
    s.session = 0;
  }
  spans_.clear();
  if (pending) c_.run_until([&] { return pending == 0; }, 1000);
  // Calls still open after that fail with the Rpc's close; their callbacks only touch `pending`
  // while we wait, so forget them now.
  if (pending) c_.run_until([] { return false; }, 0);
}

void InferenceSession::close_span(Span& s) {
  if (s.shadow) close_span(*s.shadow);
  s.shadow.reset();
  if (!s.session) return;
  Buf b;
  Packer pk(b);
  pk.pack_map(1);
  pack_str(pk, "session"), pk.pack_uint64(s.session);
  c_.rpc().call(s.hop.address, "blocks.close", b.s, c_.options().rpc_timeout_ms, nullptr);  // best effort
  s.session = 0;
}

bool InferenceSession::open_span(Span& s, std::string* err) {
  const auto& o = c_.options();
  Buf b;
  Packer pk(b);
  pk.pack_map(5);
  pack_str(pk, "model"), pack_str(pk, o.model);
  pack_str(pk, "first"), pk.pack_int64(s.hop.first);
  pack_str(pk, "last"), pk.pack_int64(s.hop.last);
  pack_str(pk, "max_length"), pk.pack_int64(max_length_);
  pack_str(pk, "wait_ms"), pk.pack_uint64(o.cache_wait_ms);
  std::string res;
  Reply r = c_.call(s.hop.address, "blocks.open", b.s, o.rpc_timeout_ms + o.cache_wait_ms, &res);
  if (!r.ok()) {
    *err = reply_error(r);
    return false;
  }
  try {
    auto oh = unpack_untrusted(res.data(), res.size());
    s.session = as_uint(need_field(oh.get(), "session"), "session");
  } catch (const BadMessage& e) {
    *err = std::string("bad reply: ") + e.what();
    return false;
  }
  return true;
}

bool InferenceSession::send_step(Span& s, float* hidden, int64_t n, int64_t position, std::string* err) {
  const auto& o = c_.options();
  const int64_t E = o.n_embd;
  const bool with_prompts = n_prompt_ > 0 && position == 0;
  if (with_prompts && n < n_prompt_)
    throw Error("the first step must carry the adapter's " + std::to_string(n_prompt_) + " prefix positions");
  Buf b;
  Packer pk(b);
  pk.pack_map(with_prompts ? 4 : 3);
  pack_str(pk, "session"), pk.pack_uint64(s.session);
  pack_str(pk, "position"), pk.pack_int64(position);
  pack_str(pk, "hidden"), pack_hidden(pk, o.wire_dtype, hidden, n, E);
  if (with_prompts) {
    const int64_t blocks = s.hop.last - s.hop.first;
    pack_str(pk, "prompts");
    pack_tensor(pk, DType::F32, {blocks, n_prompt_, E}, prompts_.data() + s.hop.first * n_prompt_ * E,
                (size_t)(blocks * n_prompt_ * E) * sizeof(float));
  }
  std::string res;
  Reply r = c_.call(s.hop.address, "blocks.step", std::move(b.s), o.step_timeout_ms, &res);
  if (!r.ok()) {
    *err = reply_error(r);
    return false;
  }
  try {
    auto oh = unpack_untrusted(res.data(), res.size());
    std::vector<float> out;
    int64_t got = 0;
    unpack_hidden(unpack_tensor(need_field(oh.get(), "hidden")), E, n, out, &got);
    if (got != n) throw BadMessage("wrong number of positions");
    std::memcpy(hidden, out.data(), out.size() * sizeof(float));
  } catch (const BadMessage& e) {
    *err = std::string("bad reply: ") + e.what();
    return false;
  }
  return true;
}

std::vector<InferenceSession::Span> InferenceSession::open_chain(int64_t from, int64_t to,
                                                                 const std::vector<float>& inputs,
                                                                 const std::vector<int64_t>& steps) {
  const auto& o = c_.options();
  const int64_t E = o.n_embd;
  const size_t per_pos = (size_t)E * dtype_block_bytes(o.wire_dtype);
  const int64_t max_chunk = std::max<int64_t>(1, (int64_t)(o.max_request_bytes / per_pos));
  // Replay groups: the original step sizes, or (merge_replay) as few requests as fit.
  std::vector<int64_t> groups;
  for (int64_t st : steps) {
    if (o.merge_replay && !groups.empty() && groups.back() + st <= max_chunk) groups.back() += st;
    else groups.push_back(st);
  }
  double deadline = now_s() + o.give_up_s;
  for (;;) {
    Route route = c_.route(from, to, RouteMode::kMinLatency, max_length_);
    if (route.empty()) {
      if (now_s() > deadline)
        throw Error("no server for blocks " + std::to_string(from) + ":" + std::to_string(to) + " of model " +
                    o.model + " (waited " + std::to_string((int)o.give_up_s) + " s)");
      c_.sleep_ms(500);
      c_.refresh();
      continue;
    }
    std::vector<Span> out;
    std::vector<float> cur = inputs;
    bool ok = true;
    for (auto& hop : route) {
      Span s;
      s.hop = hop;
      std::string err;
      if (!open_span(s, &err)) {
        c_.ban(hop.id, "open: " + err);
        ok = false;
        break;
      }
      std::vector<float> next = cur;
      int64_t pos = 0;
      for (int64_t g : groups) {
        if (!send_step(s, next.data() + pos * E, g, pos, &err)) {
          c_.ban(hop.id, "replay: " + err);
          ok = false;
          break;
        }
        pos += g;
      }
      if (!ok) {
        close_span(s);
        break;
      }
      c_.stats().replayed_steps += (int)groups.size();
      s.inputs = std::move(cur);
      s.steps = steps;
      s.outputs = next;
      out.push_back(std::move(s));
      cur = std::move(next);
    }
    if (ok) {
      c_.log("route for blocks " + std::to_string(from) + ":" + std::to_string(to) + ": " + route_to_string(route) +
             (steps.empty() ? "" : " (replayed " + std::to_string(inputs.size() / (size_t)E) + " positions)"));
      return out;
    }
    for (auto& s : out) close_span(s);
  }
}

void InferenceSession::set_prompts(std::vector<float> prompts, int64_t P) {
  if (position_ > 0) throw Error("deep prompts must be set before the first step");
  if (P < 1 || (int64_t)prompts.size() != c_.options().n_blocks * P * c_.options().n_embd)
    throw Error("deep prompts must be [n_blocks][P][n_embd]");
  prompts_ = std::move(prompts);
  n_prompt_ = P;
}

bool InferenceSession::step(float* hidden, int64_t n) {
  if (n < 1) return true;
  if (position_ + n > max_length_)
    throw Error("inference session is full: " + std::to_string(position_) + " + " + std::to_string(n) + " > " +
                std::to_string(max_length_) + " positions");
  const auto& o = c_.options();
  const size_t per_pos = (size_t)o.n_embd * dtype_block_bytes(o.wire_dtype);
  const int64_t chunk = std::max<int64_t>(1, (int64_t)(o.max_request_bytes / per_pos));
  for (int64_t off = 0; off < n; off += chunk)
    if (!step_chunk(hidden + off * o.n_embd, std::min(chunk, n - off))) return false;
  return true;
}

bool InferenceSession::step_chunk(float* hidden, int64_t n) {
  const int64_t E = c_.options().n_embd;
  if (spans_.empty()) spans_ = open_chain(0, c_.options().n_blocks, {}, {});
  const int64_t pos0 = position_;
  std::vector<float> x(hidden, hidden + n * E);
  for (size_t i = 0; i < spans_.size();) {
    std::vector<float> in = x;
    std::string err;
    if (send_step(spans_[i], x.data(), n, position_, &err)) {
      spans_[i].inputs.insert(spans_[i].inputs.end(), in.begin(), in.end());
      spans_[i].steps.push_back(n);
      spans_[i].outputs.insert(spans_[i].outputs.end(), x.begin(), x.end());
      int64_t bad = c_.draw_verify() ? spot_check(i) : -1;
      if (bad < 0) {
        i++;
        continue;
      }
      // Outputs from position `bad` on were wrong. Positions before this step
      // already chose tokens: only a caller that can regenerate may go back.
      int64_t keep = rollback_ ? std::min(bad, pos0) : pos0;
      if (keep < pos0) c_.stats().rollbacks++;
      rebuild(keep);
      if (keep < pos0) return false;
      x.assign(hidden, hidden + n * E);  // this step again, on the rebuilt chain
      i = 0;
      continue;
    }
    double t0 = now_s();
    c_.ban(spans_[i].hop.id, err);
    Span old = std::move(spans_[i]);
    close_span(old);
    x = std::move(in);
    std::vector<Span> repl = open_chain(old.hop.first, old.hop.last, old.inputs, old.steps);
    spans_.erase(spans_.begin() + (ptrdiff_t)i);
    spans_.insert(spans_.begin() + (ptrdiff_t)i, std::make_move_iterator(repl.begin()), std::make_move_iterator(repl.end()));
    c_.stats().reroutes++;
    c_.stats().last_recovery_s = now_s() - t0;
    c_.log("recovered in " + std::to_string(now_s() - t0).substr(0, 5) + " s; route now " + route_to_string(route()));
  }
  std::memcpy(hidden, x.data(), x.size() * sizeof(float));
  position_ += n;
  return true;
}

void InferenceSession::rebuild(int64_t keep) {
  const int64_t E = c_.options().n_embd;
  std::vector<float> in0 = spans_.empty() ? std::vector<float>{} : spans_[0].inputs;
  std::vector<int64_t> steps0 = spans_.empty() ? std::vector<int64_t>{} : spans_[0].steps;
  truncate_history(in0, steps0, E, keep);
  for (auto& s : spans_) close_span(s);
  spans_.clear();
  position_ = keep;
  spans_ = open_chain(0, c_.options().n_blocks, in0, steps0);
  c_.log("rebuilt the chain from position " + std::to_string(keep) + ": " + route_to_string(route()));
}

bool InferenceSession::feed(Span& s, const std::vector<float>& inputs, int64_t from, int64_t to,
                            std::vector<float>& out, std::string* err) {
  const auto& o = c_.options();
  const int64_t E = o.n_embd;
  const size_t per_pos = (size_t)E * dtype_block_bytes(o.wire_dtype);
  const int64_t chunk = std::max<int64_t>(1, (int64_t)(o.max_request_bytes / per_pos));
  out.assign(inputs.begin() + from * E, inputs.begin() + to * E);
  for (int64_t pos = from; pos < to; pos += chunk)
    if (!send_step(s, out.data() + (pos - from) * E, std::min(chunk, to - pos), pos, err)) return false;
  return true;
}

bool InferenceSession::run_on(const ServerInfo& srv, int64_t first, int64_t last, const std::vector<float>& inputs,
                              std::vector<float>& out, std::string* err) {
  Span s;
  s.hop.id = srv.id, s.hop.address = srv.address, s.hop.first = first, s.hop.last = last;
  if (!open_span(s, err)) return false;
  bool ok = feed(s, inputs, 0, (int64_t)(inputs.size() / (size_t)c_.options().n_embd), out, err);
  close_span(s);
  return ok;
}

int64_t InferenceSession::spot_check(size_t i) {
  Span& s = spans_[i];
  const int64_t E = c_.options().n_embd, rows = (int64_t)(s.inputs.size() / (size_t)E);
  const double tol = c_.verify_tolerance();
  const std::string span = std::to_string(s.hop.first) + ":" + std::to_string(s.hop.last);
  // Other servers holding all of these blocks, nearest first.
  std::vector<const ServerInfo*> others;
  for (auto& [id, srv] : c_.servers())
    if (id != s.hop.id && srv.state == ServerState::kOnline && !c_.banned(id) && srv.first <= s.hop.first &&
        srv.last >= s.hop.last)
      others.push_back(&srv);
  std::stable_sort(others.begin(), others.end(),
                   [&](const ServerInfo* a, const ServerInfo* b) { return c_.rtt(a->id) < c_.rtt(b->id); });
  if (s.shadow && c_.banned(s.shadow->hop.id)) close_span(*s.shadow), s.shadow.reset();
  // The verifier V: the shadow fed with what it has not seen yet, or a new one fed everything.
  std::vector<float> v;  // V's outputs of rows [from, rows)
  int64_t from = 0;
  for (;;) {
    if (!s.shadow) {
      auto it = std::find_if(others.begin(), others.end(), [&](const ServerInfo* x) { return !c_.banned(x->id); });
      if (it == others.end()) {
        c_.stats().verify_skipped++;
        c_.log("spot check of blocks " + span + " skipped: no other server holds them");
        return -1;
      }
      auto sh = std::make_shared<Span>();
      sh->hop.id = (*it)->id, sh->hop.address = (*it)->address, sh->hop.first = s.hop.first, sh->hop.last = s.hop.last;
      std::string err;
      if (!open_span(*sh, &err)) {
        c_.ban(sh->hop.id, "spot check: " + err);
        continue;
      }
      s.shadow = std::move(sh);
      s.shadow_fed = 0;
    }
    std::string err;
    from = s.shadow_fed;
    if (feed(*s.shadow, s.inputs, from, rows, v, &err)) break;
    // An old shadow may just have expired on its server (idle sessions are
    // closed): start a fresh one; a fresh one failing is the server's fault.
    if (from == 0) c_.ban(s.shadow->hop.id, "spot check: " + err);
    else c_.log("spot check shadow on " + s.shadow->hop.id.substr(0, 8) + " lost (" + err + "); opening a new one");
    close_span(*s.shadow);
    s.shadow.reset();
  }
  c_.stats().verifications++;
  const std::string vid = s.shadow->hop.id;
  const int64_t n = rows - from;
  const float* p = s.outputs.data() + from * E;
  int64_t p_vs_v = first_mismatch(p, v.data(), n, E, tol);
  double worst = 0;  // shown so that tolerances can be judged against honest differences
  for (int64_t r = 0; r < n; r++) worst = std::max(worst, row_error(p + r * E, v.data() + r * E, E));
  char err_s[32];
  std::snprintf(err_s, sizeof err_s, "%.3g", worst);
  c_.log("spot check of " + s.hop.id.substr(0, 8) + " (blocks " + span + ", positions " + std::to_string(from) + ".." +
         std::to_string(rows) + ") against " + vid.substr(0, 8) + ": " + (p_vs_v < 0 ? "ok" : "MISMATCH") +
         ", max error " + err_s);
  if (p_vs_v < 0) {
    s.shadow_fed = rows;
    return -1;
  }
  c_.stats().mismatches++;
  // The third server W replays everything; only the unchecked rows are compared.
  int64_t w_vs_p = -2, w_vs_v = -2;
  std::string wid;
  for (const ServerInfo* w : others) {
    if (w->id == vid || c_.banned(w->id)) continue;
    std::vector<float> out;
    std::string err;
    if (!run_on(*w, s.hop.first, s.hop.last, s.inputs, out, &err)) {
      c_.ban(w->id, "spot check: " + err);
      continue;
    }
    w_vs_p = first_mismatch(out.data() + from * E, p, n, E, tol);
    w_vs_v = first_mismatch(out.data() + from * E, v.data(), n, E, tol);
    wid = w->id;
    break;
  }
  const int64_t bad = from + p_vs_v;
  char why[160];
  std::snprintf(why, sizeof why, "relative error %.3g > %.3g at position %lld",
                row_error(p + p_vs_v * E, v.data() + p_vs_v * E, E), tol, (long long)bad);
  Verdict verdict = arbitrate(p_vs_v, w_vs_p, w_vs_v);
  c_.log(std::string("spot check verdict: ") + verdict_name(verdict) +
         (wid.empty() ? " (no third server)" : " (third server " + wid.substr(0, 8) + ")"));
  switch (verdict) {
    case Verdict::kPrimaryLies:
      c_.distrust(s.hop.id, s.hop.first, s.hop.last, bad, why);
      return bad;
    case Verdict::kVerifierLies:
      c_.distrust(vid, s.hop.first, s.hop.last, bad, why);
      close_span(*s.shadow);
      s.shadow.reset();
      return -1;
    default: {
      c_.stats().unresolved++;
      std::string line = "spot check: servers " + s.hop.id.substr(0, 8) + " and " + vid.substr(0, 8) +
                         " disagree on blocks " + span + " (" + why + ") and no third server settles it";
      if (c_.options().warn) c_.options().warn(line);
      else c_.log(line);
      // The shadow's cache now differs from the span's: start over with a fresh one next time.
      close_span(*s.shadow);
      s.shadow.reset();
      return -1;
    }
  }
}

}  // namespace engine::net
