#include "amqp/link.h"

#include "log.h"

namespace warren::amqp {

Link::Link(Loop& loop, ConnectionOptions options, std::string name)
    : loop_(loop), options_(std::move(options)), name_(std::move(name)) {
  reconnect_timer_.reset(evtimer_new(loop_.base(), on_reconnect_timer, this));
}

Link::~Link() { let_go(); }

void Link::let_go() {
  if (!conn_) return;
  // Its states are no longer ours (a copy of the callback is what runs, so this is safe from
  // inside it), and it is never freed inside its own callback: a later loop pass does that.
  conn_->set_state_callback(nullptr);
  const auto state = conn_->state();
  if (state != ConnectionState::closing && state != ConnectionState::closed) conn_->close();
  loop_.defer_delete(std::move(conn_));
}

void Link::connect() {
  if (reconnecting()) return;
  make_connection();
  // The first attempt after a success goes at once: a lost node is failed over without delay.
  // Only a run of failures waits, longer each time.
  const bool retrying = backoff_.attempts() > 0;
  const double delay = backoff_.next_delay();
  if (!retrying) return conn_->start();
  const timeval tv = to_timeval(delay);
  evtimer_add(reconnect_timer_.get(), &tv);
}

void Link::reconnect() {
  if (reconnecting()) return;
  on_trial_ = true;
  const auto state = this->state();
  if (state == ConnectionState::closed) return wait_then_connect();
  // The owner hears closed first; the wait starts then, so two connections never report to it
  // at once.
  reconnect_when_closed_ = true;
  if (state != ConnectionState::closing) conn_->close();
}

void Link::wait_then_connect() {
  reconnect_when_closed_ = false;
  const timeval tv = to_timeval(backoff_.next_delay());
  evtimer_add(reconnect_timer_.get(), &tv);
}

void Link::ready() {
  on_trial_ = false;
  backoff_.reset();
}

bool Link::reconnecting() const {
  return reconnect_when_closed_ || event_pending(reconnect_timer_.get(), EV_TIMEOUT, nullptr);
}

void Link::on_reconnect_timer(evutil_socket_t, short, void* arg) { static_cast<Link*>(arg)->start_now(); }

// The wait is over: start the connection connect() made, or a new one after reconnect().
void Link::start_now() {
  if (!conn_ || conn_->state() != ConnectionState::idle) make_connection();
  conn_->start();
}

void Link::make_connection() {
  let_go();
  conn_ = std::make_unique<Connection>(loop_, options_, stats_);
  conn_->set_state_callback([this](ConnectionState state, const Result& why) { on_connection_state(state, why); });
}

void Link::close() {
  reconnect_when_closed_ = false;
  evtimer_del(reconnect_timer_.get());
  if (!conn_) return;
  const auto state = conn_->state();
  if (state != ConnectionState::closing && state != ConnectionState::closed) conn_->close();
}

ConnectionState Link::state() const { return conn_ ? conn_->state() : ConnectionState::closed; }

std::shared_ptr<Channel> Link::open_channel(bool confirms) { return conn_->open_channel(confirms); }

void Link::on_connection_state(ConnectionState state, const Result& why) {
  switch (state) {
    case ConnectionState::open:
      if (backoff_.attempts() > 0) log_info("broker connection for {} open to {}", name_, conn_->peer());
      // An owner whose set-up failed on the last connection (a 406 on its declaration) would
      // fail the same way on this one: it is a success once the owner says so.
      if (!on_trial_) backoff_.reset();
      break;
    case ConnectionState::blocked:
      log_warning("broker blocked publishing for {}: {}", name_, why.text);
      break;
    case ConnectionState::closed:
      // The next connection starts where this one was, or at the next host after a failure: a
      // node that died is not tried first (a host that is down may take connect_timeout).
      if (!options_.hosts.empty())
        options_.first_host = (conn_->host_position() + (why.ok() ? 0 : 1)) % options_.hosts.size();
      if (reconnect_when_closed_) wait_then_connect();
      if (why.outcome == Outcome::refused)
        log_warning("broker refused the login of {}: {}", name_, why.text);
      else if (!why.ok())
        log_warning("broker connection for {} lost: {}", name_, why.text);
      break;
    default:
      break;
  }
  if (auto cb = on_state_) cb(state, why);  // a copy: the owner may destroy the link
}

bool vhost_not_found(const Result& r) {
  return r.code == 530 && r.text.find("not found") != std::string::npos;
}

}  // namespace warren::amqp
