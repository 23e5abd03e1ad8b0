// Listening sockets: bound by the master before any fork and kept across reloads, so a new
// generation of workers accepts on the very sockets the old one did and no connection is refused.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "handles.h"

namespace warren {

struct ListenerKey {
  std::string address;
  int port = 0;
  int index = 0;  // several sockets per port with SO_REUSEPORT, one per worker
  auto operator<=>(const ListenerKey&) const = default;
};

// The master's sockets, by key. bind_all() keeps those still wanted and binds the new ones.
class Listeners {
 public:
  // Binds every (address, port, 0..workers_per_port-1) not yet bound. On failure returns the
  // error ("bind() to 127.0.0.1:8000 failed: Address already in use") and binds nothing new.
  [[nodiscard]] std::string bind_all(const std::string& address, const std::vector<int>& ports,
                                     int workers_per_port);
  // Closes the sockets whose key is not in `keep`.
  void close_except(const std::vector<ListenerKey>& keep);
  int fd(const ListenerKey& key) const;
  std::vector<int> fds() const;

  // The binary upgrade (proc/upgrade.cc): the sockets as the environment variable
  // kInheritedListenersVar carries them to the new binary ("fd,index,port,address;..."), and
  // taking them over in that binary. adopt() takes only descriptors that are listening TCP
  // sockets, and says which entries it refused (an empty string when none).
  std::string inherited_value() const;
  [[nodiscard]] std::string adopt(const std::string& value);

 private:
  std::map<ListenerKey, Fd> sockets_;
};

inline constexpr const char* kInheritedListenersVar = "WARREN_LISTENERS";

// A Unix stream socket at `path`, mode `mode`, replacing a stale socket file but never a live one.
// With replace_live, a socket another process still answers on is replaced too: the new binary
// of an upgrade takes the control socket over from the old one, which goes on serving without it.
[[nodiscard]] Fd listen_unix(const std::string& path, int mode, bool replace_live, std::string* error);

}  // namespace warren
