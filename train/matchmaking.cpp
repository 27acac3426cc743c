// Leader-based group formation for one epoch (see matchmaking.h for the rules).
// One formation is a Pending that moves through:
//
//   gathering --(gather_ms, read the DHT)--> following leader[0], leader[1], ...
//                                      \--> leading (when the next leader to try is us)
//   following --(join answered)--> done            leading --(all joined / window)--> done
//   anything --(overall deadline)--> done (alone, or the group a leader has so far)
//
// Joins that reach us before we know our role are held: if we end up leading,
// they are members; otherwise they are refused and their senders move on.
#include "train/matchmaking.h"

#include <algorithm>
#include <set>

#include "net/msg.h"
#include "train/match_messages.h"

namespace engine::train {

using net::BadMessage;
using net::ErrorCode;
using net::NodeId;

namespace {

constexpr const char* kJoinMethod = "avg.join";
// While gathering with an expected count: how often the announcements are read.
constexpr uint32_t kGatherPollMs = 50;

std::string group_key(const std::string& run, int64_t epoch) { return run + ".group." + std::to_string(epoch); }

// A one-shot libuv timer calling a std::function; stop() and the destructor are
// safe at any time (the handle is freed once libuv has closed it).
class Timer {
 public:
  explicit Timer(uv_loop_t* loop) : t_(new uv_timer_t) {
    uv_timer_init(loop, t_);
    t_->data = this;
  }
  ~Timer() {
    uv_close((uv_handle_t*)t_, [](uv_handle_t* h) { delete (uv_timer_t*)h; });
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void start(uint64_t ms, std::function<void()> fn) {
    fn_ = std::move(fn);
    uv_timer_start(t_, on_fire, ms, 0);
  }
  void stop() {
    uv_timer_stop(t_);
    fn_ = nullptr;
  }

 private:
  static void on_fire(uv_timer_t* t) {
    auto fn = std::move(((Timer*)t->data)->fn_);  // may destroy this Timer's owner
    if (fn) fn();
  }
  uv_timer_t* t_;
  std::function<void()> fn_;
};

RoundSpec alone(const std::string& run, int64_t epoch, const GroupMember& me) {
  RoundSpec s;
  s.round_id = run + "." + std::to_string(epoch) + ".solo." + me.id.short_hex();
  s.members = {me};
  s.my_index = 0;
  return s;
}

}  // namespace

// ---- one formation ---------------------------------------------------------------------

struct Matchmaker::Pending {
  enum class Role { kGathering, kFollowing, kLeading, kDone };
  struct Joiner {
    GroupMember member;
    net::Responder out;
  };

  Pending(uv_loop_t* loop) : phase(loop), deadline(loop), watch(loop) {}
  std::string run;
  int64_t epoch = 0;
  GroupMember me;
  double weight = 1;
  MatchmakingConfig cfg;
  std::function<void(RoundSpec)> done;
  uint64_t deadline_ms = 0;  // loop time
  uint64_t gather_until_ms = 0;  // loop time: read the candidates by then at the latest

  Role role = Role::kGathering;
  std::vector<GroupMember> candidates;  // from the DHT, without us, sorted by id
  std::vector<GroupMember> leaders;     // who may lead (not client mode), us included, sorted by id
  size_t next_leader = 0;
  uint64_t join_call = 0;               // our avg.join in flight (0: none)
  std::set<NodeId> expected;            // as leader: whom we wait for
  std::map<NodeId, Joiner> joined;      // joins held for our answer
  std::string closed_why;               // once done: what a late joiner is told
  uint64_t retry_leader_until_ms = 0;   // a leader not forming yet is asked again until then
  std::set<NodeId> failed_leaders;       // joins that failed otherwise: not followed again
  Timer phase, deadline, watch;
};

Matchmaker::Matchmaker(net::Rpc& rpc, net::DhtNode& dht) : rpc_(rpc), dht_(dht) {
  rpc_.handle(kJoinMethod, [this](net::Request& r) { on_join(r); });
}

Matchmaker::~Matchmaker() {
  rpc_.handle(kJoinMethod, [](net::Request& r) { r.fail(ErrorCode::kUnavailable, "matchmaker stopped"); });
  if (auto P = leading_) abandon(P);
}

void Matchmaker::form_group(const std::string& run, int64_t epoch, const GroupMember& me, double weight,
                            const MatchmakingConfig& cfg, std::function<void(RoundSpec)> done) {
  if (auto old = leading_; old && old->role != Pending::Role::kDone) finish(old, alone(old->run, old->epoch, old->me));
  auto P = std::make_shared<Pending>(rpc_.loop());
  leading_ = P;
  P->run = run;
  P->epoch = epoch;
  P->me = me;
  P->me.client_mode = me.client_mode || me.addr.empty();
  P->weight = weight;
  P->me.weight = weight;
  P->cfg = cfg;
  P->done = std::move(done);
  uint32_t total = cfg.deadline_ms ? cfg.deadline_ms : cfg.gather_ms + cfg.join_window_ms + 2 * cfg.rpc_timeout_ms;
  P->deadline_ms = rpc_.now_ms() + total;

  // The announcement outlives the round a little, so late readers still see who took part.
  double expiration = dht_.now() + total / 1000.0 + 5;
  std::string subkey = "@";  // (+= : GCC 12 warns falsely about "literal" + std::string)
  subkey += me.id.hex();
  dht_.put(group_key(run, epoch), subkey, encode_announcement(P->me, weight), expiration,
           [](int, int, const net::LookupStats&) {});
  std::weak_ptr<Pending> w = P;
  P->gather_until_ms = rpc_.now_ms() + cfg.gather_ms;
  P->phase.start(cfg.expected_peers > 0 ? std::min(cfg.gather_ms, kGatherPollMs) : cfg.gather_ms, [this, w] {
    if (auto p = w.lock()) read_candidates(p);
  });
  P->deadline.start(total, [this, w] {
    if (auto p = w.lock()) on_deadline(p);
  });
}

// Who announced for this epoch, and so who should lead. While fewer than the
// expected peers have announced and the gathering time is not over, look again.
void Matchmaker::read_candidates(const std::shared_ptr<Pending>& P) {
  dht_.get(group_key(P->run, P->epoch), [this, P](const net::GetResult& r) {
    if (P->role == Pending::Role::kDone) return;  // (also after the Matchmaker is gone)
    double now = dht_.now();
    std::vector<GroupMember> found;
    if (r.record.is_dict) {
      for (auto& [sub, e] : r.record.dict) {
        auto id = net::subkey_owner(sub);
        if (!id || *id == P->me.id || e.expiration <= now) continue;
        try {
          auto oh = net::unpack_untrusted(e.value.data(), e.value.size());
          found.push_back(decode_announcement(*id, oh.get()));
        } catch (const BadMessage&) {
          // A malformed announcement is not a candidate.
        }
      }
    }
    const bool everyone = P->cfg.expected_peers > 0 && (int)found.size() + 1 >= P->cfg.expected_peers;
    if (!everyone && rpc_.now_ms() < P->gather_until_ms) {
      std::weak_ptr<Pending> w = P;
      P->phase.start((uint32_t)std::min<uint64_t>(kGatherPollMs, P->gather_until_ms - rpc_.now_ms()), [this, w] {
        if (auto p = w.lock()) read_candidates(p);
      });
      return;
    }
    P->candidates = std::move(found);
    auto by_id = [](const GroupMember& a, const GroupMember& b) { return a.id < b.id; };
    std::sort(P->candidates.begin(), P->candidates.end(), by_id);
    for (auto& c : P->candidates)
      if (!c.client_mode) P->leaders.push_back(c);
    if (!P->me.client_mode) P->leaders.push_back(P->me);
    std::sort(P->leaders.begin(), P->leaders.end(), by_id);
    try_next_leader(P);
  });
}

// Joins the lowest candidate not tried yet; when that is us, we lead.
void Matchmaker::try_next_leader(const std::shared_ptr<Pending>& P) {
  if (P->next_leader >= P->leaders.size()) {
    finish(P, alone(P->run, P->epoch, P->me));
    return;
  }
  const GroupMember leader = P->leaders[P->next_leader++];
  if (leader.id == P->me.id) {
    lead(P);
    return;
  }
  uint64_t now = rpc_.now_ms();
  if (now >= P->deadline_ms) {
    finish(P, alone(P->run, P->epoch, P->me));
    return;
  }
  P->role = Pending::Role::kFollowing;
  P->watch.stop();
  if (!P->retry_leader_until_ms) P->retry_leader_until_ms = now + P->cfg.join_window_ms;
  uint32_t timeout = (uint32_t)std::min<uint64_t>(P->cfg.rpc_timeout_ms, P->deadline_ms - now);
  P->join_call = rpc_.call(leader.addr, kJoinMethod, encode_join(P->run, P->epoch, P->me, P->weight), timeout,
                           [this, P](const net::Reply& r) {
                             P->join_call = 0;
                             if (P->role == Pending::Role::kDone) return;
                             if (r.ok()) {
                               try {
                                 finish(P, decode_group(*r.result, P->me.id));
                                 return;
                               } catch (const BadMessage&) {
                                 // A leader that answers nonsense is as good as a dead one.
                               }
                             }
                             // "Not forming a group for this epoch (yet)": the leader has not
                             // reached this epoch's matchmaking. Leading ourselves now would
                             // make two leaders that each wait for the other; ask it again.
                             if (r.code == ErrorCode::kNotFound && rpc_.now_ms() < P->retry_leader_until_ms) {
                               P->next_leader--;
                               std::weak_ptr<Pending> w = P;
                               P->phase.start(kGatherPollMs * 2, [this, w] {
                                 if (auto p = w.lock()) try_next_leader(p);
                               });
                               return;
                             }
                             P->failed_leaders.insert(P->leaders[P->next_leader - 1].id);
                             try_next_leader(P);
                           });
}

// We lead: wait for every candidate that may still come (all but the leaders
// we found dead before us), at most join_window_ms.
void Matchmaker::lead(const std::shared_ptr<Pending>& P) {
  P->role = Pending::Role::kLeading;
  std::set<NodeId> skipped;
  for (size_t i = 0; i + 1 < P->next_leader; i++) skipped.insert(P->leaders[i].id);
  for (auto& c : P->candidates)
    if (!skipped.count(c.id)) P->expected.insert(c.id);
  if (group_complete(*P)) {
    close_group(P);
    return;
  }
  std::weak_ptr<Pending> w = P;
  P->phase.start(P->cfg.join_window_ms, [this, w] {
    if (auto p = w.lock()) close_group(p);
  });
  watch_for_lower_leader(P);
}

// While we lead and no one has joined yet, a peer with a lower id that announced
// after we read the key leads by the rule, and it expects us: follow it instead of
// waiting for it to join us (which it never will).
void Matchmaker::watch_for_lower_leader(const std::shared_ptr<Pending>& P) {
  std::weak_ptr<Pending> w = P;
  P->watch.start(kGatherPollMs * 2, [this, w] {
    auto P = w.lock();
    if (!P || P->role != Pending::Role::kLeading || !P->joined.empty()) return;
    dht_.get(group_key(P->run, P->epoch), [this, w](const net::GetResult& r) {
      auto P = w.lock();
      if (!P || P->role != Pending::Role::kLeading || !P->joined.empty()) return;
      std::optional<GroupMember> lower;
      const double now = dht_.now();
      if (r.record.is_dict)
        for (auto& [sub, e] : r.record.dict) {
          auto id = net::subkey_owner(sub);
          if (!id || !(*id < P->me.id) || e.expiration <= now || P->failed_leaders.count(*id)) continue;
          try {
            auto oh = net::unpack_untrusted(e.value.data(), e.value.size());
            GroupMember m = decode_announcement(*id, oh.get());
            if (!m.client_mode && (!lower || m.id < lower->id)) lower = m;
          } catch (const BadMessage&) {
          }
        }
      if (!lower) {
        watch_for_lower_leader(P);
        return;
      }
      P->phase.stop();
      P->leaders = {*lower, P->me};
      P->next_leader = 0;
      P->retry_leader_until_ms = 0;
      try_next_leader(P);
    });
  });
}

bool Matchmaker::group_complete(const Pending& P) const {
  if ((int)P.joined.size() + 1 >= P.cfg.max_group) return true;
  for (auto& id : P.expected)
    if (!P.joined.count(id)) return false;
  // Peers the caller knows are at this epoch but that had not announced yet when we
  // read the key are still coming: closing without them would leave them a group of
  // their own (the join window bounds the wait for one that never comes).
  return (int)P.joined.size() + 1 >= P.cfg.expected_peers;
}

// Answers every held join with the final group (sorted by id) and finishes.
void Matchmaker::close_group(const std::shared_ptr<Pending>& P) {
  if (P->role == Pending::Role::kDone) return;
  RoundSpec spec;
  spec.round_id = P->run + "." + std::to_string(P->epoch) + "." + P->me.id.short_hex();
  spec.members.push_back(P->me);
  for (auto& [id, j] : P->joined) spec.members.push_back(j.member);
  std::sort(spec.members.begin(), spec.members.end(),
            [](const GroupMember& a, const GroupMember& b) { return a.id < b.id; });
  for (size_t i = 0; i < spec.members.size(); i++)
    if (spec.members[i].id == P->me.id) spec.my_index = (int)i;
  std::string answer = encode_group(spec);
  for (auto& [id, j] : P->joined) j.out.respond(answer);
  P->joined.clear();
  finish(P, std::move(spec));
}

void Matchmaker::on_deadline(const std::shared_ptr<Pending>& P) {
  if (P->role == Pending::Role::kLeading) close_group(P);  // those who made it form the group
  else finish(P, alone(P->run, P->epoch, P->me));
}

// Ends the formation once: stops its timers and call, refuses the joins it
// still holds, and hands the group over.
void Matchmaker::finish(const std::shared_ptr<Pending>& P, RoundSpec spec) {
  if (P->role == Pending::Role::kDone) return;
  end(P, spec.members.size() > 1 ? "group of epoch " + std::to_string(P->epoch) + " is closed"
                                 : "this peer averages alone at epoch " + std::to_string(P->epoch));
  auto done = std::move(P->done);
  if (done) done(std::move(spec));
}

// Without calling done: the Matchmaker is being destroyed.
void Matchmaker::abandon(const std::shared_ptr<Pending>& P) {
  if (P->role != Pending::Role::kDone) end(P, "matchmaker stopped");
  P->done = nullptr;
}

void Matchmaker::end(const std::shared_ptr<Pending>& P, const std::string& why) {
  P->role = Pending::Role::kDone;
  P->closed_why = why;
  P->phase.stop();
  P->deadline.stop();
  P->watch.stop();
  if (P->join_call) {
    uint64_t id = P->join_call;
    P->join_call = 0;
    rpc_.cancel(id);  // its callback sees kDone and returns
  }
  for (auto& [id, j] : P->joined) j.out.fail(ErrorCode::kRejected, why);
  P->joined.clear();
}

// ---- the leader's side ------------------------------------------------------------------

void Matchmaker::on_join(net::Request& r) {
  JoinRequest q = decode_join(r.args);
  const std::string& run = q.run;
  const int64_t epoch = q.epoch;
  GroupMember& m = q.member;
  if (m.id != r.peer.id) {
    r.fail(ErrorCode::kRejected, "the member's id is not the caller's");
    return;
  }
  // Other members will dial the address we proved for this connection, never
  // one it merely claims; a member without one takes part in client mode.
  m.addr = m.client_mode ? "" : r.peer.listen;
  m.client_mode = m.addr.empty();

  std::shared_ptr<Pending> P = leading_;
  if (!P || P->run != run || P->epoch != epoch) {
    r.fail(ErrorCode::kNotFound, "not forming a group for " + run + " epoch " + std::to_string(epoch));
    return;
  }
  if (P->role == Pending::Role::kDone) {
    r.fail(ErrorCode::kRejected, P->closed_why);
    return;
  }
  if (m.id == P->me.id) {
    r.fail(ErrorCode::kRejected, "cannot join oneself");
    return;
  }
  if (!P->joined.count(m.id) && (int)P->joined.size() + 1 >= P->cfg.max_group) {
    r.fail(ErrorCode::kRejected, "group is full");
    return;
  }
  auto old = P->joined.find(m.id);
  if (old != P->joined.end()) old->second.out.fail(ErrorCode::kRejected, "superseded by a newer join");
  P->joined[m.id] = Pending::Joiner{m, r.responder};
  if (P->role == Pending::Role::kLeading && group_complete(*P)) close_group(P);
}

}  // namespace engine::train
