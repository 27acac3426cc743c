// Butterfly all-reduce: one Round per round id, playing two roles at once.
//   member:  sends part j of its contribution to reducer j (avg.part, a window of
//            chunks in flight) and fetches part j's result (avg.result, likewise);
//   reducer: collects every member's chunks of its own part, aggregates once all
//            are complete (or at 70% of the deadline), then answers the fetches.
// Messages may come before this member starts the round; they wait, bounded, in
// the round's early lists. All state changes that end a round (done(), freeing)
// happen in the round's timer callback, so no handler frees the state it runs on.
#include "train/butterfly.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.h"
#include "train/avg_messages.h"

namespace engine::train {

using net::ErrorCode;
using net::NodeId;
using net::Responder;

namespace {

constexpr int kWindow = 4;                 // calls in flight per reducer, each direction
constexpr double kAggregateAt = 0.7;       // fraction of the deadline a reducer waits for senders
constexpr size_t kRoundsRemembered = 256;  // freed round ids kept for "round is over" errors
constexpr uint64_t kEarlyResultCost = 256; // bytes charged for one buffered avg.result

}  // namespace

struct ButterflyAllReduce::Round : std::enable_shared_from_this<Round> {
  Round(ButterflyAllReduce* o, std::string round_id) : owner(o), rpc(o->rpc_), id(std::move(round_id)) {
    timer = new uv_timer_t;
    uv_timer_init(rpc.loop(), timer);
    timer->data = this;
  }
  ~Round() {
    uv_timer_stop(timer);
    uv_close((uv_handle_t*)timer, [](uv_handle_t* h) { delete (uv_timer_t*)h; });
  }

  ButterflyAllReduce* owner;
  net::Rpc& rpc;
  std::string id;
  uv_timer_t* timer;

  // ---- before this member starts the round: what others sent early ----
  struct EarlyPart {
    NodeId from;
    AvgPart msg;        // msg.round and msg.data are re-pointed at replay
    std::string data;
    Responder r;
  };
  struct EarlyResult {
    NodeId from;
    AvgResultRequest req;
    Responder r;
  };
  bool started = false;
  uint64_t early_until = 0;  // loop ms; not started by then: dropped
  uint64_t early_bytes = 0;
  std::vector<EarlyPart> early_parts;
  std::vector<EarlyResult> early_results;

  // ---- the round, once started ----
  RoundSpec spec;
  AllReduceConfig cfg;
  std::vector<int64_t> offsets;  // part j = [offsets[j], offsets[j+1])
  std::vector<int> reducers;     // member index of the reducer of part j
  int my_part = -1;              // the part this member reduces; -1 in client mode
  int64_t chunk_values = 1;
  uint64_t t0 = 0, aggregate_at = 0, deadline = 0, hr0 = 0;
  std::vector<float> local;
  std::vector<float> corrupted;  // what is sent, when the test hook rewrote it
  const float* contribution = nullptr;
  double weight = 0;
  AllReduceResult res;           // res.averaged fills in as parts arrive
  std::function<void(AllReduceResult)> done;
  bool member_done = false;
  uint64_t bytes_sent = 0, bytes_received = 0;

  // ---- reducer side: my_part's contributions and result ----
  struct Sender {
    std::vector<float> values;  // part-sized, allocated at the first valid chunk
    std::vector<uint8_t> got;   // per chunk
    int64_t chunks = 0;
    double weight = 0;
    bool rejected = false;
  };
  struct Parked {
    int member;
    uint64_t chunk;
    Responder r;
  };
  std::vector<Sender> senders;  // by member index
  bool aggregated = false;
  std::string result_wire;      // the part's result, encoded once; chunks are slices
  std::vector<Parked> parked;   // fetches that came before the result
  std::vector<std::vector<uint8_t>> served;  // [member][chunk]
  int64_t served_count = 0;

  // ---- member side, by part ----
  struct Part {
    int64_t next_send = 0, sends_open = 0;
    bool send_stopped = false;
    int64_t next_fetch = 0, fetches_open = 0, fetched = 0;
    bool done = false;
  };
  std::vector<Part> parts;
  int parts_open = 0;

  // ---------------------------------------------------------------------------
  // geometry
  int64_t part_begin(int j) const { return offsets[j]; }
  int64_t part_len(int j) const { return offsets[j + 1] - offsets[j]; }
  int64_t chunks_of(int j) const { return (part_len(j) + chunk_values - 1) / chunk_values; }
  int64_t chunk_begin(int j, int64_t c) const { return part_begin(j) + c * chunk_values; }
  int64_t chunk_len(int j, int64_t c) const { return std::min(chunk_values, part_len(j) - c * chunk_values); }
  int member_index(const NodeId& id) const {
    for (size_t i = 0; i < spec.members.size(); i++)
      if (spec.members[i].id == id) return (int)i;
    return -1;
  }
  uint32_t remaining_ms() const {
    uint64_t now = rpc.now_ms();
    return now >= deadline ? 0 : (uint32_t)std::min<uint64_t>(deadline - now, UINT32_MAX);
  }

  // ---------------------------------------------------------------------------
  // start
  void start(const RoundSpec& s, std::vector<float> v, double w, const AllReduceConfig& c,
             std::function<void(AllReduceResult)> d, const std::function<void(std::vector<float>&)>& corrupt) {
    if (corrupt) {
      corrupted = v;
      corrupt(corrupted);
      if (corrupted.size() != v.size()) throw Error("all_reduce: corrupt() must keep the vector's size");
    }
    started = true;
    spec = s;
    cfg = c;
    done = std::move(d);
    weight = w;
    t0 = rpc.now_ms();
    hr0 = uv_hrtime();
    deadline = t0 + cfg.deadline_ms;
    aggregate_at = t0 + (uint64_t)(cfg.deadline_ms * kAggregateAt);
    local = std::move(v);
    res.averaged = local;
    contribution = corrupt ? corrupted.data() : local.data();
    if (spec.members.size() == 1) {  // a group of one: its own vector, no RPC
      arm();
      return;
    }

    const int64_t n = (int64_t)local.size();
    reducers = reducer_members(spec.members);
    offsets = partition(spec.members, n);
    chunk_values = wire_chunk_values(cfg.wire, cfg.chunk_bytes);
    parts.resize(reducers.size());
    for (size_t j = 0; j < reducers.size(); j++) {
      if (reducers[j] == spec.my_index) my_part = (int)j;
      if (part_len((int)j) > 0) res.parts_total++;
      else parts[j].done = true;
    }
    parts_open = res.parts_total;
    if (my_part >= 0) start_reducing();
    replay_early();
    for (int j = 0; j < (int)parts.size(); j++)
      if (j != my_part) pump(j);
    arm();
  }

  void start_reducing() {
    senders.resize(spec.members.size());
    served.resize(spec.members.size());
    const int64_t len = part_len(my_part);
    if (len == 0) {
      aggregated = true;
      return;
    }
    // Our own contribution needs no RPC, but takes the same trip through the
    // wire dtype as everyone else's, so no contribution is more exact than another.
    Sender& me = senders[spec.my_index];
    me.values.resize(len);
    std::string wire = wire_encode(cfg.wire, contribution + part_begin(my_part), len);
    wire_decode(cfg.wire, wire, me.values.data(), len);
    me.chunks = chunks_of(my_part);
    me.weight = weight;
    if (!all_finite(me.values.data(), len)) me.rejected = true;  // our own NaN: not aggregated
  }

  void replay_early() {
    auto early = std::move(early_parts);
    auto results = std::move(early_results);
    early_parts.clear();
    early_results.clear();
    for (auto& e : early) {
      e.msg.round = id;
      e.msg.data = e.data;
      handle_part(e.from, e.msg, e.r);
    }
    for (auto& e : results) handle_result(e.from, e.req, e.r);
  }

  // ---------------------------------------------------------------------------
  // reducer: avg.part
  void handle_part(const NodeId& from, const AvgPart& m, Responder r) {
    int s = member_index(from);
    if (s < 0) {
      r.fail(ErrorCode::kRejected, "not a member of round " + id);
      return;
    }
    if (my_part < 0 || m.part != (uint32_t)my_part || s == spec.my_index) {
      reject(s, r, ErrorCode::kBadRequest, "part " + std::to_string(m.part) + " is not reduced here");
      return;
    }
    Sender& S = senders[s];
    if (S.rejected) {
      r.fail(ErrorCode::kRejected, "this sender's contribution was already rejected");
      return;
    }
    if (aggregated) {
      r.fail(ErrorCode::kRejected, "too late: the part is aggregated");
      return;
    }
    const int64_t nchunks = chunks_of(my_part);
    if (m.dtype != cfg.wire) return reject(s, r, ErrorCode::kBadRequest, "wire dtype differs from the round's");
    if (m.chunk >= (uint64_t)nchunks) return reject(s, r, ErrorCode::kBadRequest, "chunk index out of range");
    if (m.offset != chunk_begin(my_part, m.chunk) || m.n != chunk_len(my_part, m.chunk))
      return reject(s, r, ErrorCode::kBadRequest, "offset/n do not match the chunk");
    if (S.got.empty()) {
      S.values.resize(part_len(my_part));
      S.got.assign(nchunks, 0);
      S.weight = m.weight;
    } else if (m.weight != S.weight) {
      return reject(s, r, ErrorCode::kBadRequest, "weight changed between chunks");
    }
    if (S.got[m.chunk]) return reject(s, r, ErrorCode::kBadRequest, "chunk sent twice");
    float* dst = S.values.data() + (m.offset - part_begin(my_part));
    wire_decode(cfg.wire, m.data, dst, m.n);
    if (!all_finite(dst, m.n)) return reject(s, r, ErrorCode::kBadRequest, "non-finite values");
    S.got[m.chunk] = 1;
    S.chunks++;
    bytes_received += m.data.size();
    r.respond(net::empty_map());
    if (S.chunks == nchunks && all_senders_complete()) aggregate();
  }

  // A member that broke the rules loses its whole contribution to this part.
  void reject(int s, Responder& r, ErrorCode code, const std::string& why) {
    if (s != spec.my_index && !senders.empty()) {
      senders[s].rejected = true;
      senders[s].values = {};
      senders[s].got = {};
    }
    r.fail(code, why);
  }

  bool complete(const Sender& S) const { return !S.rejected && S.chunks == chunks_of(my_part); }
  // Every sender has either sent all of its part or lost its place (rejected, gone):
  // nothing more can come, so there is no reason to wait for the deadline.
  bool all_senders_complete() const {
    for (const Sender& S : senders)
      if (!complete(S) && !S.rejected) return false;
    return true;
  }

  // Member `id`'s connection closed: its contribution to our part will not come, and
  // the part it reduces will not be served.
  void peer_gone(const NodeId& gone) {
    if (!started) return;
    const int s = member_index(gone);
    if (s < 0 || s == spec.my_index) return;
    if (my_part >= 0 && !aggregated && !senders.empty() && !complete(senders[s])) {
      senders[s].rejected = true;
      senders[s].values = {};
      senders[s].got = {};
      if (all_senders_complete()) aggregate();
    }
    if (!member_done)
      for (int j = 0; j < (int)parts.size(); j++)
        if (reducers[j] == s && !parts[j].done) fail_part(j);
    arm();
  }

  void aggregate() {
    aggregated = true;
    const int64_t len = part_len(my_part);
    std::vector<const float*> inputs;
    std::vector<double> w;
    for (size_t i = 0; i < senders.size(); i++) {
      if (complete(senders[i])) {
        inputs.push_back(senders[i].values.data());
        w.push_back(senders[i].weight);
      } else if ((int)i != spec.my_index) {
        res.dropped.push_back(spec.members[i].id);
      }
    }
    float* out = res.averaged.data() + part_begin(my_part);
    if (inputs.empty()) {
      std::copy_n(local.data() + part_begin(my_part), len, out);  // nothing valid came in, not even ours
    } else {
      std::vector<float> agg(len);
      train::aggregate(cfg.aggregator, inputs, w, len, cfg.clip, agg.data());
      std::copy_n(agg.data(), len, out);
    }
    // Everyone, this member included, gets the result as the wire carries it.
    result_wire = wire_encode(cfg.wire, out, len);
    wire_decode(cfg.wire, result_wire, out, len);
    senders = std::vector<Sender>(senders.size());
    parts[my_part].done = true;
    parts_open--;
    auto waiting = std::move(parked);
    parked.clear();
    for (auto& p : waiting) serve(p.member, p.chunk, p.r);
    arm();
  }

  // ---------------------------------------------------------------------------
  // reducer: avg.result
  void handle_result(const NodeId& from, const AvgResultRequest& q, Responder r) {
    int s = member_index(from);
    if (s < 0) {
      r.fail(ErrorCode::kRejected, "not a member of round " + id);
      return;
    }
    if (my_part < 0 || q.part != (uint32_t)my_part) {
      r.fail(ErrorCode::kBadRequest, "part " + std::to_string(q.part) + " is not reduced here");
      return;
    }
    if (q.chunk >= (uint64_t)chunks_of(my_part)) {
      r.fail(ErrorCode::kBadRequest, "chunk index out of range");
      return;
    }
    if (!aggregated) {
      parked.push_back({s, q.chunk, std::move(r)});
      return;
    }
    serve(s, q.chunk, r);
  }

  void serve(int member, uint64_t c, Responder& r) {
    const int64_t begin = chunk_begin(my_part, c), n = chunk_len(my_part, c);
    const size_t at = wire_bytes(cfg.wire, begin - part_begin(my_part)), bytes = wire_bytes(cfg.wire, n);
    AvgResultReply rep{begin, n, cfg.wire, std::string_view(result_wire).substr(at, bytes)};
    if (!r.respond(encode_avg_result_reply(rep))) return;
    bytes_sent += bytes;
    auto& got = served[member];
    if (got.empty()) got.assign(chunks_of(my_part), 0);
    if (!got[c]) {
      got[c] = 1;
      if (++served_count == everyone_served()) arm();  // may free the round early
    }
  }

  int64_t everyone_served() const { return (int64_t)(spec.members.size() - 1) * chunks_of(my_part); }

  // ---------------------------------------------------------------------------
  // member: send part j, fetch its result
  void pump(int j) {
    Part& P = parts[j];
    const int64_t nchunks = chunks_of(j);
    while (!P.done && !P.send_stopped && P.sends_open < kWindow && P.next_send < nchunks) send_chunk(j, P.next_send++);
    while (!P.done && P.fetches_open < kWindow && P.next_fetch < nchunks) fetch_chunk(j, P.next_fetch++);
  }

  void send_chunk(int j, int64_t c) {
    uint32_t left = remaining_ms();
    if (left == 0) return;
    const int64_t begin = chunk_begin(j, c), n = chunk_len(j, c);
    std::string data = wire_encode(cfg.wire, contribution + begin, n);
    AvgPart m{id, (uint32_t)j, (uint64_t)c, begin, n, weight, cfg.wire, data};
    bytes_sent += data.size();
    parts[j].sends_open++;
    std::weak_ptr<Round> self = weak_from_this();
    rpc.call(spec.members[reducers[j]].addr, "avg.part", encode_avg_part(m), left, [self, j](const net::Reply& rep) {
      auto R = self.lock();
      if (!R || R->member_done) return;
      Part& P = R->parts[j];
      P.sends_open--;
      if (!rep.ok()) P.send_stopped = true;  // the reducer refused us: our contribution there is void
      // Unreachable (refused, closed): the reducer is gone for this whole round.
      if (rep.code == ErrorCode::kUnavailable) return R->peer_gone(R->spec.members[R->reducers[j]].id);
      R->pump(j);
    });
  }

  void fetch_chunk(int j, int64_t c) {
    uint32_t left = remaining_ms();
    if (left == 0) return;
    parts[j].fetches_open++;
    std::weak_ptr<Round> self = weak_from_this();
    AvgResultRequest q{id, (uint32_t)j, (uint64_t)c};
    rpc.call(spec.members[reducers[j]].addr, "avg.result", encode_avg_result_request(q), left,
             [self, j, c](const net::Reply& rep) {
               auto R = self.lock();
               if (!R || R->member_done) return;
               R->parts[j].fetches_open--;
               if (R->parts[j].done) return;
               if (rep.ok() && rep.result && R->take_result(j, c, *rep.result)) {
                 R->pump(j);
               } else {
                 R->fail_part(j);
                 if (rep.code == ErrorCode::kUnavailable) R->peer_gone(R->spec.members[R->reducers[j]].id);
               }
             });
  }

  // Writes a fetched chunk into the result; false if the reply is not that chunk.
  bool take_result(int j, int64_t c, const msgpack::object& body) {
    AvgResultReply m;
    try {
      m = decode_avg_result_reply(body);
    } catch (const net::BadMessage&) {
      return false;
    }
    if (m.dtype != cfg.wire || m.offset != chunk_begin(j, c) || m.n != chunk_len(j, c)) return false;
    float* dst = res.averaged.data() + m.offset;
    wire_decode(cfg.wire, m.data, dst, m.n);
    if (!all_finite(dst, m.n)) return false;
    bytes_received += m.data.size();
    Part& P = parts[j];
    if (++P.fetched == chunks_of(j)) {
      P.done = true;
      if (--parts_open == 0) arm();
    }
    return true;
  }

  // Part j stays at this member's own values (all of it: no half-averaged parts).
  void fail_part(int j) {
    Part& P = parts[j];
    if (P.done) return;
    P.done = true;
    P.send_stopped = true;
    res.parts_failed++;
    std::copy_n(local.data() + part_begin(j), part_len(j), res.averaged.data() + part_begin(j));
    if (--parts_open == 0) arm();
  }

  // ---------------------------------------------------------------------------
  // time: one timer per round, set to its next event
  void arm() {
    const uint64_t now = rpc.now_ms();
    uint64_t next;
    if (!started) next = early_until;
    else if (!member_done && parts_open == 0) next = now;
    else if (member_done && reducer_finished()) next = now;  // free it
    else if (my_part >= 0 && !aggregated) next = std::min(aggregate_at, deadline);
    else next = deadline;
    uv_timer_start(timer, on_timer, next > now ? next - now : 0, 0);
  }

  bool reducer_finished() const {
    return my_part < 0 || (aggregated && served_count == everyone_served()) || rpc.now_ms() >= deadline;
  }

  static void on_timer(uv_timer_t* t) {
    auto R = ((Round*)t->data)->shared_from_this();  // keeps it alive while it frees itself
    R->tick();
  }

  void tick() {
    const uint64_t now = rpc.now_ms();
    if (!started) {
      if (now >= early_until) drop_early("round " + id + " did not start here in time");
      else arm();
      return;
    }
    if (my_part >= 0 && !aggregated && now >= aggregate_at) aggregate();
    if (!member_done && (parts_open == 0 || now >= deadline)) {
      finish_member();
      if (orphaned) return;
    }
    if (member_done && reducer_finished()) {
      for (auto& p : parked) p.r.fail(ErrorCode::kNotFound, "round " + id + " is over");
      parked.clear();
      owner->forget(id);
      return;
    }
    arm();
  }

  void drop_early(const std::string& why) {
    for (auto& e : early_parts) e.r.fail(ErrorCode::kNotFound, why);
    for (auto& e : early_results) e.r.fail(ErrorCode::kNotFound, why);
    early_parts.clear();
    early_results.clear();
    owner->rounds_.erase(id);  // not remembered as over: it may still start here later
  }

  // Hands the result over. done() may start rounds or even destroy the averager
  // (then `orphaned` is set and the caller's shared_ptr keeps this Round alive).
  void finish_member() {
    member_done = true;
    for (int j = 0; j < (int)parts.size(); j++)
      if (!parts[j].done) fail_part(j);
    res.bytes_sent = bytes_sent;
    res.bytes_received = bytes_received;
    res.seconds = (double)(uv_hrtime() - hr0) * 1e-9;
    auto cb = std::move(done);
    AllReduceResult out = std::move(res);  // the reducer serves from result_wire, not from this
    if (cb) cb(std::move(out));
  }

  // The averager is going away: whoever waits on this round gets an error.
  void abandon() {
    orphaned = true;
    for (auto& e : early_parts) e.r.fail(ErrorCode::kUnavailable, "averager closed");
    for (auto& e : early_results) e.r.fail(ErrorCode::kUnavailable, "averager closed");
    for (auto& p : parked) p.r.fail(ErrorCode::kUnavailable, "averager closed");
    early_parts.clear();
    early_results.clear();
    parked.clear();
  }
  bool orphaned = false;
};

// -----------------------------------------------------------------------------

ButterflyAllReduce::ButterflyAllReduce(net::Rpc& rpc) : rpc_(rpc) {
  rpc_.handle("avg.part", [this](net::Request& r) { on_part(r); });
  rpc_.handle("avg.result", [this](net::Request& r) { on_result(r); });
  prev_on_closed_ = rpc_.on_peer_closed;
  rpc_.on_peer_closed = [this](const net::PeerInfo& p, const std::string& why) {
    if (prev_on_closed_) prev_on_closed_(p, why);
    peer_gone(p.id);
  };
}

void ButterflyAllReduce::peer_gone(const net::NodeId& id) {
  // A round's done() may start or free rounds: walk a copy.
  std::vector<std::shared_ptr<Round>> live;
  for (auto& [rid, R] : rounds_) live.push_back(R);
  for (auto& R : live) R->peer_gone(id);
}

ButterflyAllReduce::~ButterflyAllReduce() {
  rpc_.on_peer_closed = prev_on_closed_;
  for (auto& [id, R] : rounds_) R->abandon();
  rounds_.clear();
  auto closed = [](net::Request& r) { r.fail(ErrorCode::kUnavailable, "averager closed"); };
  rpc_.handle("avg.part", closed);
  rpc_.handle("avg.result", closed);
}

void ButterflyAllReduce::all_reduce(const RoundSpec& spec, std::vector<float> local, double weight,
                                    const AllReduceConfig& cfg, std::function<void(AllReduceResult)> done,
                                    std::function<void(std::vector<float>&)> corrupt) {
  const auto& M = spec.members;
  if (spec.round_id.empty() || spec.round_id.size() > kMaxRoundIdBytes) throw Error("all_reduce: bad round id");
  if (spec.my_index < 0 || spec.my_index >= (int)M.size()) throw Error("all_reduce: my_index out of range");
  if (M.size() > kMaxGroupParts) throw Error("all_reduce: group too large");
  if (M[spec.my_index].id != rpc_.id()) throw Error("all_reduce: members[my_index].id is not this rpc's id");
  std::set<NodeId> ids;
  for (size_t i = 0; i < M.size(); i++) {
    if (!ids.insert(M[i].id).second) throw Error("all_reduce: duplicate member id");
    if (!M[i].client_mode && M[i].addr.empty() && (int)i != spec.my_index)
      throw Error("all_reduce: a reducer without an address (client_mode must be set)");
  }
  if (!(weight > 0) || !std::isfinite(weight)) throw Error("all_reduce: weight must be positive and finite");
  if (cfg.deadline_ms == 0) throw Error("all_reduce: deadline_ms must be positive");
  if (cfg.chunk_bytes < 64 || cfg.chunk_bytes + 4096 > rpc_.options().limits.max_frame)
    throw Error("all_reduce: chunk_bytes must be in [64, frame limit - 4 KiB]");
  if (is_over(spec.round_id)) throw Error("all_reduce: round " + spec.round_id + " already ran");

  auto it = rounds_.find(spec.round_id);
  std::shared_ptr<Round> R;
  if (it != rounds_.end()) {
    if (it->second->started) throw Error("all_reduce: round " + spec.round_id + " is running");
    R = it->second;  // others' messages came first: adopt them
  } else {
    if ((int)rounds_.size() >= limits.max_rounds) {
      // Our own rounds outrank rounds only announced by (maybe hostile) peers.
      auto victim = std::find_if(rounds_.begin(), rounds_.end(), [](auto& kv) { return !kv.second->started; });
      if (victim == rounds_.end()) throw Error("all_reduce: too many rounds at once");
      auto keep = victim->second;
      keep->drop_early("too many rounds: round " + keep->id + " dropped");
    }
    R = std::make_shared<Round>(this, spec.round_id);
    rounds_[spec.round_id] = R;
  }
  R->start(spec, std::move(local), weight, cfg, std::move(done), corrupt);
}

std::shared_ptr<ButterflyAllReduce::Round> ButterflyAllReduce::round_for_message(std::string_view id,
                                                                                 std::string* why) {
  std::string key(id);
  auto it = rounds_.find(key);
  if (it != rounds_.end()) return it->second;
  if (is_over(key)) {
    *why = "round " + key + " is over";
    return nullptr;
  }
  if ((int)rounds_.size() >= limits.max_rounds) {
    *why = "too many rounds at once";
    return nullptr;
  }
  auto R = std::make_shared<Round>(this, key);
  rounds_[key] = R;
  return R;
}

void ButterflyAllReduce::on_part(net::Request& r) {
  AvgPart m = decode_avg_part(r.args);  // BadMessage: the rpc answers code 1
  std::string why;
  auto R = round_for_message(m.round, &why);
  if (!R) return r.fail(why.find("over") != std::string::npos ? ErrorCode::kNotFound : ErrorCode::kRejected, why);
  if (R->started) return R->handle_part(r.peer.id, m, r.responder);
  // Early: keep a copy until this member starts the round (or gives up on it).
  if (R->early_bytes + m.data.size() > limits.max_round_bytes) {
    if (R->early_parts.empty() && R->early_results.empty()) rounds_.erase(R->id);  // created for this message
    return r.fail(ErrorCode::kRejected, "too many bytes buffered for round " + std::string(m.round));
  }
  R->early_bytes += m.data.size();
  Round::EarlyPart e{r.peer.id, m, std::string(m.data), r.responder};
  e.msg.round = {};
  e.msg.data = {};
  R->early_parts.push_back(std::move(e));
  R->early_until = std::max(R->early_until, r.deadline_ms);
  R->arm();
}

void ButterflyAllReduce::on_result(net::Request& r) {
  AvgResultRequest q = decode_avg_result_request(r.args);
  std::string why;
  auto R = round_for_message(q.round, &why);
  if (!R) return r.fail(why.find("over") != std::string::npos ? ErrorCode::kNotFound : ErrorCode::kRejected, why);
  if (R->started) return R->handle_result(r.peer.id, q, r.responder);
  if (R->early_bytes + kEarlyResultCost > limits.max_round_bytes) {
    if (R->early_parts.empty() && R->early_results.empty()) rounds_.erase(R->id);
    return r.fail(ErrorCode::kRejected, "too many requests buffered for round " + std::string(q.round));
  }
  R->early_bytes += kEarlyResultCost;
  q.round = {};
  R->early_results.push_back({r.peer.id, q, r.responder});
  R->early_until = std::max(R->early_until, r.deadline_ms);
  R->arm();
}

void ButterflyAllReduce::forget(const std::string& id) {
  if (over_.size() < kRoundsRemembered) over_.push_back(id);
  else over_[over_next_++ % kRoundsRemembered] = id;
  rounds_.erase(id);
}

bool ButterflyAllReduce::is_over(const std::string& id) const {
  return std::find(over_.begin(), over_.end(), id) != over_.end();
}

}  // namespace engine::train
