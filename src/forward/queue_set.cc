#include "forward/queue_set.h"

#include "amqp/connection.h"
#include "log.h"
#include "options.h"

namespace warren::forward {

QueueSet::QueueSet(Context& context, const Config& config, std::string name)
    : loop_(context.loop), config_(config), name_(std::move(name)), http_(context.loop) {
  for (const auto& f : config_.forwarders) {
    if (f.queue_set != name_) continue;
    auto& backend = *backends_.emplace_back(std::make_unique<HttpBackend>(f, http_, counters_[f.name]));
    forwarders_.push_back(std::make_unique<core::Forwarder>(
        loop_, forwarder_options(config_, f, backend.consume_plan()), backend, counters_[f.name],
        context.histograms.forward_seconds));
  }
  drain_timer_.reset(evtimer_new(loop_.base(), on_drain_timeout, this));
}

QueueSet::~QueueSet() = default;

void QueueSet::start() {
  for (auto& b : backends_) b->start();
  for (auto& f : forwarders_) f->start();
}

void QueueSet::drain(double timeout, std::function<void()> done) {
  on_drained_ = std::move(done);
  draining_ = forwarders_.size();
  if (draining_ == 0) return loop_.defer([this] { drained_one(); });
  timeval tv = to_timeval(timeout);
  evtimer_add(drain_timer_.get(), &tv);
  for (auto& f : forwarders_) f->drain([this] { drained_one(); });
}

void QueueSet::drained_one() {
  if (draining_ > 0) --draining_;
  if (draining_ > 0 || !on_drained_) return;
  evtimer_del(drain_timer_.get());
  auto done = std::move(on_drained_);
  on_drained_ = nullptr;
  done();
}

void QueueSet::on_drain_timeout(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<QueueSet*>(arg);
  size_t left = 0;
  for (auto& f : self->forwarders_) left += f->in_flight();
  log_warning("queue set {}: {} message(s) still in flight at the drain deadline; requeueing them",
              self->name_, left);
  // requeue_all() lets each forwarder report drained, which counts down to done.
  for (auto& f : self->forwarders_) f->requeue_all();
}

void QueueSet::close() {
  for (auto& f : forwarders_) f->close();
}

void QueueSet::fill(Snapshot& snapshot) const {
  snapshot.queue_set = name_;
  for (const auto& [name, c] : counters_) snapshot.forwarders[name].merge(c);
  for (const auto& f : forwarders_) {
    add_broker_counters(snapshot.counters, f->broker_stats());
    if (auto node = f->broker_node(); !node.empty()) snapshot.broker_nodes["forwarder " + f->name()] = node;
  }
}

}  // namespace warren::forward
