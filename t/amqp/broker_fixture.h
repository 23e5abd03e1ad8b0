// Shared by the broker-link tests: a real RabbitMQ (WARREN_BROKER_PORT, else the test is
// skipped), a Loop, and a loop runner bounded in time.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "amqp/channel.h"
#include "amqp/connection.h"
#include "handles.h"
#include "loop.h"

namespace warren::amqp::testing {

inline std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// rabbitmqctl on the test broker, through scripts/broker, which knows its node, cookie and epmd.
inline std::string rabbitmqctl_command() {
  std::string dir = env("WARREN_BROKER_DIR"), root = env("WARREN_ROOT");
  if (dir.empty()) return {};
  return (root.empty() ? std::string(".") : root) + "/scripts/broker ctl " + dir + " -q";
}

// The broker closes the connection named `connection_name` (320 CONNECTION_FORCED); only ours:
// other tests may share the broker.
inline bool force_close(const std::string& connection_name) {
  const std::string ctl = rabbitmqctl_command();
  const std::string cmd = "pid=$(" + ctl + " list_connections pid client_properties | grep '" +
                          connection_name + "' | cut -f1) && [ -n \"$pid\" ] && " + ctl +
                          " close_connection \"$pid\" 'warren test' >/dev/null";
  return std::system(cmd.c_str()) == 0;
}

class BrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* port = std::getenv("WARREN_BROKER_PORT");
    if (!port || !*port) GTEST_SKIP() << "WARREN_BROKER_PORT not set: no broker to test against";
    port_ = std::atoi(port);
    loop_ = std::make_unique<Loop>();
  }
  void TearDown() override {
    // let deferred callbacks of destroyed objects run, so nothing is left allocated
    if (loop_) run_for(0.05);
  }

  ConnectionOptions options() const {
    ConnectionOptions o;
    o.hosts = {{"127.0.0.1", port_}};
    o.heartbeat = 10;
    o.connect_timeout = 5;
    o.connection_name = "warren-test";
    return o;
  }

  // Runs the loop until done() or `seconds` pass; returns done().
  bool run_until(const std::function<bool()>& done, double seconds) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      timeval slice{0, 5000};
      event_base_loopexit(loop_->base(), &slice);
      event_base_dispatch(loop_->base());
    }
    return true;
  }
  void run_for(double seconds) {
    run_until([] { return false; }, seconds);
  }

  std::unique_ptr<Connection> connect(ConnectionOptions o) {
    auto c = std::make_unique<Connection>(*loop_, std::move(o), &stats_);
    c->start();
    run_until([&] { return c->state() == ConnectionState::open || c->state() == ConnectionState::closed; }, 15);
    return c;
  }
  std::unique_ptr<Connection> connect() { return connect(options()); }

  std::string unique_name(const std::string& prefix) {
    return prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(++counter_);
  }

  // A port on 127.0.0.1 where nothing listens.
  static int closed_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
  }

  int port_ = 0;
  std::unique_ptr<Loop> loop_;  // made in SetUp: a skipped test needs none
  Stats stats_;
  int counter_ = 0;
};

}  // namespace warren::amqp::testing
