#include "proc/listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <sstream>

#include "log.h"

namespace warren {
namespace {

constexpr int kBacklog = 511;  // nginx's default; the kernel caps it at somaxconn

Fd bind_tcp(const std::string& address, int port, bool reuseport, std::string* error) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const std::string spec = address.find(':') != std::string::npos
                               ? fmt::format("[{}]:{}", address, port)
                               : fmt::format("{}:{}", address, port);
  if (evutil_parse_sockaddr_port(spec.c_str(), reinterpret_cast<sockaddr*>(&ss),
                                 reinterpret_cast<int*>(&len)) != 0) {
    *error = fmt::format("{}: not a numeric IP address", address);
    return {};
  }
  Fd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    *error = fmt::format("socket() failed: {}", errno_text(errno));
    return {};
  }
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport) setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      listen(fd.get(), kBacklog) != 0) {
    *error = fmt::format("bind() to {} failed: {}", spec, errno_text(errno));
    return {};
  }
  return fd;
}

}  // namespace

std::string Listeners::bind_all(const std::string& address, const std::vector<int>& ports,
                                int workers_per_port) {
  std::map<ListenerKey, Fd> fresh;
  for (int port : ports) {
    std::string error;
    // Every socket has SO_REUSEPORT, so that a reload can add workers to a port whose first
    // socket is already bound. A port another process listens on (another warrend, whose
    // sockets have it too) must still be refused: a socket without it, bound once, finds out.
    if (!sockets_.count({address, port, 0}) && !bind_tcp(address, port, false, &error)) return error;
    for (int i = 0; i < workers_per_port; ++i) {
      ListenerKey key{address, port, i};
      if (sockets_.count(key)) continue;
      Fd fd = bind_tcp(address, port, true, &error);
      if (!fd) return error;
      fresh.emplace(key, std::move(fd));
    }
  }
  for (auto& [key, fd] : fresh) {
    log_info("listening on {}:{} (socket {})", key.address, key.port, key.index);
    sockets_.emplace(key, std::move(fd));
  }
  return {};
}

void Listeners::close_except(const std::vector<ListenerKey>& keep) {
  std::erase_if(sockets_, [&](const auto& entry) {
    return std::find(keep.begin(), keep.end(), entry.first) == keep.end();
  });
}

int Listeners::fd(const ListenerKey& key) const {
  auto it = sockets_.find(key);
  return it == sockets_.end() ? -1 : it->second.get();
}

std::vector<int> Listeners::fds() const {
  std::vector<int> out;
  for (const auto& [key, fd] : sockets_) out.push_back(fd.get());
  return out;
}

std::string Listeners::inherited_value() const {
  std::string out;
  for (const auto& [key, fd] : sockets_)
    out += fmt::format("{}{},{},{},{}", out.empty() ? "" : ";", fd.get(), key.index, key.port, key.address);
  return out;
}

std::string Listeners::adopt(const std::string& value) {
  std::string refused;
  std::istringstream entries(value);
  for (std::string entry; std::getline(entries, entry, ';');) {
    int fd = -1, accepting = 0, consumed = 0;
    ListenerKey key;
    socklen_t len = sizeof accepting;
    if (sscanf(entry.c_str(), "%d,%d,%d,%n", &fd, &key.index, &key.port, &consumed) != 3 || consumed == 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting) {
      refused += (refused.empty() ? "" : ", ") + entry;
      continue;
    }
    key.address = entry.substr(consumed);
    fcntl(fd, F_SETFD, FD_CLOEXEC);  // the workers get theirs explicitly, like bound ones
    log_info("listening on {}:{} (socket {}, inherited)", key.address, key.port, key.index);
    sockets_.insert_or_assign(std::move(key), Fd(fd));
  }
  return refused;
}

Fd listen_unix(const std::string& path, int mode, bool replace_live, std::string* error) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) {
    *error = fmt::format("{}: path too long for a Unix socket", path);
    return {};
  }
  memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    *error = fmt::format("socket() failed: {}", errno_text(errno));
    return {};
  }
  // A socket file nobody answers on is left over from a crash: replace it. A live one is not ours.
  Fd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!replace_live && connect(probe.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0) {
    *error = fmt::format("{}: another warrend is listening on this control socket", path);
    return {};
  }
  unlink(path.c_str());
  const mode_t old_mask = umask(0777 & ~mode);
  const int rc = bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun);
  umask(old_mask);
  if (rc != 0 || listen(fd.get(), 64) != 0) {
    *error = fmt::format("bind() to {} failed: {}", path, errno_text(errno));
    return {};
  }
  chmod(path.c_str(), mode);
  return fd;
}

}  // namespace warren
