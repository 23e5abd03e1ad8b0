#include "proc/control.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <exception>


#include "log.h"

namespace warren {
namespace {
constexpr size_t kMaxCommand = 4096;
}

struct Control::Client : std::enable_shared_from_this<Control::Client> {
  Control* owner;
  BuffereventPtr bev;
  bool answered = false;
  bool done = false;
};

Control::Control(event_base* base, Fd listener, Handler handler, gid_t group)
    : base_(base), listener_(std::move(listener)), handler_(std::move(handler)), group_(group) {
  if (group_ != static_cast<gid_t>(-1))
    if (const struct group* gr = getgrgid(group_))
      for (char** name = gr->gr_mem; *name; ++name)
        if (const passwd* pw = getpwnam(*name)) group_members_.insert(pw->pw_uid);
  accept_event_.reset(event_new(base, listener_.get(), EV_READ | EV_PERSIST, on_accept, this));
  event_add(accept_event_.get(), nullptr);
  reap_event_.reset(event_new(base, -1, 0, on_reap, this));
}

bool Control::peer_allowed(int fd) const {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  if (cred.uid == 0 || cred.uid == geteuid()) return true;
  if (group_ == static_cast<gid_t>(-1)) return false;
  // The peer's primary group is in SO_PEERCRED; its supplementary groups are not.
  return cred.gid == group_ || group_members_.count(cred.uid) > 0;
}

void Control::on_accept(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<Control*>(arg);
  int conn = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (conn < 0) return;  // EAGAIN or a client that went away: nothing to do
  if (!self->peer_allowed(conn)) {
    ucred cred{};
    socklen_t len = sizeof cred;
    getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len);
    log_warning("control socket: refused a client with uid {} gid {}", cred.uid, cred.gid);
    close(conn);
    return;
  }
  auto client = std::make_shared<Client>();
  client->owner = self;
  client->bev.reset(bufferevent_socket_new(self->base_, conn, BEV_OPT_CLOSE_ON_FREE));
  bufferevent_setcb(client->bev.get(), on_read, on_write, on_event, client.get());
  bufferevent_enable(client->bev.get(), EV_READ | EV_WRITE);
  timeval timeout{10, 0};  // a silent client does not hold a slot forever
  bufferevent_set_timeouts(client->bev.get(), &timeout, nullptr);
  self->clients_.push_back(std::move(client));
}

void Control::on_read(bufferevent* bev, void* arg) {
  auto* client = static_cast<Client*>(arg);
  evbuffer* in = bufferevent_get_input(bev);
  size_t len = 0;
  char* line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
  if (!line) {
    if (evbuffer_get_length(in) > kMaxCommand) client->owner->finish(client);
    return;
  }
  std::string command(line, len);
  free(line);  // evbuffer_readln's malloc, documented to be freed by the caller
  if (client->answered) return;
  client->answered = true;
  bufferevent_disable(bev, EV_READ);
  std::weak_ptr<Client> weak = client->weak_from_this();
  // The reply may come later (stats are collected from the workers); the client may be gone.
  auto reply = [weak](const std::string& body) {
    auto c = weak.lock();
    if (!c || c->done) return;
    bufferevent_write(c->bev.get(), body.data(), body.size());
    bufferevent_write(c->bev.get(), "\n", 1);
  };
  // The loop's edge: a command that fails answers an error; the master goes on.
  try {
    client->owner->handler_(command, reply);
  } catch (const std::exception& e) {
    log_error("control socket: a command failed: {}", e.what());
    reply(R"({"error": "internal error", "detail": "the command failed; see the log"})");
  }
}

void Control::on_write(bufferevent* bev, void* arg) {
  auto* client = static_cast<Client*>(arg);
  if (client->answered && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
    client->owner->finish(client);
}

void Control::on_event(bufferevent*, short, void* arg) {
  auto* client = static_cast<Client*>(arg);
  client->owner->finish(client);
}

void Control::finish(Client* client) {
  // Freed on the next loop pass, never inside its own callback.
  client->done = true;
  bufferevent_disable(client->bev.get(), EV_READ | EV_WRITE);
  event_active(reap_event_.get(), 0, 0);
}

void Control::on_reap(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Control*>(arg);
  self->clients_.remove_if([](const auto& c) { return c->done; });
}

}  // namespace warren
