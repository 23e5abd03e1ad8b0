// The listening sockets as a binary upgrade hands them over: what the old master writes into the
// environment, the new master takes back, and nothing else.
#include "proc/listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proc/upgrade.h"

namespace warren {
namespace {

// A port nothing listens on now (the kernel's pick for a socket closed at once).
int free_port() {
  Fd probe(socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sin;
  if (bind(probe.get(), reinterpret_cast<sockaddr*>(&sin), len) != 0 ||
      getsockname(probe.get(), reinterpret_cast<sockaddr*>(&sin), &len) != 0)
    return -1;
  return ntohs(sin.sin_port);
}

TEST(Listeners, InheritedValueRoundTripsEveryKeyOnTheSameSockets) {
  const int port = free_port();
  Listeners old_master;
  ASSERT_EQ(old_master.bind_all("127.0.0.1", {port}, 2), "");
  const std::string value = old_master.inherited_value();
  // The new binary gets descriptors of its own (dup'd here as exec would keep them).
  std::string handed = value;
  for (int fd : old_master.fds()) {
    const int copy = dup(fd);
    const std::string from = std::to_string(fd) + ",", to = std::to_string(copy) + ",";
    handed.replace(handed.find(from), from.size(), to);
  }
  Listeners new_master;
  EXPECT_EQ(new_master.adopt(handed), "");
  for (int i = 0; i < 2; ++i) {
    const int fd = new_master.fd({"127.0.0.1", port, i});
    ASSERT_GE(fd, 0) << value;
    EXPECT_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC) << "a worker or a later exec would leak it";
  }
  // Nothing to bind: the keys are there, so bind_all does not bind the port again.
  EXPECT_EQ(new_master.bind_all("127.0.0.1", {port}, 2), "");
  EXPECT_EQ(new_master.fds().size(), 2u);
}

TEST(Listeners, AdoptRefusesWhatIsNotAListeningSocketAndMalformedEntries) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  Listeners l;
  const std::string refused =
      l.adopt(std::to_string(pair[0]) + ",0,8000,127.0.0.1;999999,0,8000,127.0.0.1;junk;7,x,1,a");
  EXPECT_EQ(refused, std::to_string(pair[0]) + ",0,8000,127.0.0.1, 999999,0,8000,127.0.0.1, junk, 7,x,1,a");
  EXPECT_TRUE(l.fds().empty());
  close(pair[0]);
  close(pair[1]);
}

TEST(FileId, TellsAFileReplacedAtTheSamePathFromTheOneOpened) {
  char path[] = "/tmp/warren-fileid-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(file_id(path), file_id(fd));
  unlink(path);
  EXPECT_EQ(file_id(path), FileId{});
  const int other = open(path, O_CREAT | O_WRONLY, 0600);
  EXPECT_NE(file_id(path), file_id(fd));
  close(other);
  close(fd);
  unlink(path);
}

}  // namespace
}  // namespace warren
