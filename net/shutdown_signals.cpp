#include "net/shutdown_signals.h"

#include <csignal>

namespace engine::net {

ShutdownSignals::ShutdownSignals(uv_loop_t* loop, std::function<void(int)> on_signal)
    : on_signal_(std::move(on_signal)) {
  for (int signum : {SIGINT, SIGTERM}) {
    handles_.push_back(std::make_unique<Handle>());
    Handle* s = handles_.back().get();
    s->owner = this;
    s->signum = signum;
    uv_signal_init(loop, &s->h);
    s->h.data = s;
    uv_signal_start(&s->h, [](uv_signal_t* h, int) {
      auto* s = (Handle*)h->data;
      s->owner->on_signal_(s->signum);
    }, signum);
  }
}

void ShutdownSignals::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& s : handles_) uv_close((uv_handle_t*)&s->h, nullptr);
}

}  // namespace engine::net
