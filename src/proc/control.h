// The master's control socket: one command line in, one JSON document out, then close.
// warrenctl speaks it; so can `socat - UNIX:/run/warren/warrend.sock`.
#pragma once

#include <functional>
#include <list>
#include <memory>
#include <set>
#include <string>

#include <sys/types.h>

#include "handles.h"

namespace warren {

class Control : NonCopyable {
 public:
  using Reply = std::function<void(const std::string& body)>;
  // Called with the command line (e.g. "stats"); answer by calling reply once, now or later.
  using Handler = std::function<void(const std::string& command, Reply reply)>;

  // Only root, our own user and members of `group` (-1: none) are served: the socket file's mode
  // and owner are the first line of defence, the peer's credentials (SO_PEERCRED) the second,
  // for a socket whose mode someone loosened. The group's members are looked up here, once:
  // the master's loop never waits on the user database (NSS, perhaps LDAP).
  Control(event_base* base, Fd listener, Handler handler, gid_t group = static_cast<gid_t>(-1));
  int fd() const { return listener_.get(); }

 private:
  struct Client;
  bool peer_allowed(int fd) const;
  static void on_accept(evutil_socket_t fd, short what, void* arg);
  static void on_read(bufferevent* bev, void* arg);
  static void on_write(bufferevent* bev, void* arg);
  static void on_event(bufferevent* bev, short what, void* arg);
  void finish(Client* client);
  static void on_reap(evutil_socket_t, short, void* arg);

  event_base* base_;
  Fd listener_;
  EventPtr accept_event_;
  EventPtr reap_event_;
  Handler handler_;
  gid_t group_;
  std::set<uid_t> group_members_;  // users with `group` as a supplementary group
  std::list<std::shared_ptr<Client>> clients_;
};

}  // namespace warren
