// The broker link against a real RabbitMQ: a lost connection is replaced at once, a host that
// keeps failing is retried with growing pauses, reconnect() lets the owner hear the old
// connection close before the next one starts, and a destroyed link never calls back.
#include "amqp/link.h"

#include <vector>

#include "t/amqp/broker_fixture.h"

namespace warren::amqp::testing {
namespace {

class LinkTest : public BrokerTest {
 protected:
  // A link whose owner connects again whenever the connection closes, as a forwarder does.
  std::unique_ptr<Link> make_link(ConnectionOptions o, bool reconnect_on_close = true) {
    auto link = std::make_unique<Link>(*loop_, std::move(o), "link test");
    link->set_state_callback([this, l = link.get(), reconnect_on_close](ConnectionState s, const Result&) {
      seen_.push_back(s);
      if (s == ConnectionState::closed && reconnect_on_close) l->connect();
    });
    return link;
  }
  size_t count(ConnectionState s) const { return std::count(seen_.begin(), seen_.end(), s); }

  std::vector<ConnectionState> seen_;
};

TEST_F(LinkTest, ALostConnectionIsReplacedAtOnce) {
  if (rabbitmqctl_command().empty()) GTEST_SKIP() << "WARREN_BROKER_DIR not set";
  auto o = options();
  o.connection_name = unique_name("warren-link-lost");
  auto link = make_link(o);
  link->connect();
  ASSERT_TRUE(run_until([&] { return link->is_open(); }, 10));
  ASSERT_TRUE(force_close(o.connection_name));
  ASSERT_TRUE(run_until([&] { return count(ConnectionState::closed) == 1; }, 10));
  // No backoff pause after a connection that was open: a failed-over node costs one connect.
  const auto lost = std::chrono::steady_clock::now();
  ASSERT_TRUE(run_until([&] { return link->is_open(); }, 2));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - lost).count(), 1.0);
  EXPECT_EQ(link->stats().connections_opened, 2u);
}

TEST_F(LinkTest, AfterALossTheNextHostIsTriedFirst) {
  if (rabbitmqctl_command().empty()) GTEST_SKIP() << "WARREN_BROKER_DIR not set";
  auto o = options();
  o.hosts = {o.hosts[0], o.hosts[0]};  // two names for one node: which one is used shows
  o.connection_name = unique_name("warren-link-next-host");
  auto link = make_link(o);
  link->connect();
  ASSERT_TRUE(run_until([&] { return link->is_open(); }, 10));
  EXPECT_EQ(link->connection()->host_position(), 0u);
  ASSERT_TRUE(force_close(o.connection_name));
  ASSERT_TRUE(run_until([&] { return count(ConnectionState::closed) == 1 && link->is_open(); }, 10));
  // A node that died is not the first one tried again: it may take connect_timeout to fail.
  EXPECT_EQ(link->connection()->host_position(), 1u);
}

TEST_F(LinkTest, AHostThatKeepsFailingIsRetriedWithGrowingPauses) {
  auto o = options();
  o.hosts = {{"127.0.0.1", closed_port()}};
  auto link = make_link(o);
  link->connect();
  run_for(1.0);
  // Pauses of 0.05-0.1, 0.1-0.2, 0.2-0.4, 0.4-0.8 s: a handful of attempts in a second, not the
  // hundreds of a loop that retries at once.
  EXPECT_GE(count(ConnectionState::closed), 2u);
  EXPECT_LE(count(ConnectionState::closed), 6u);
  EXPECT_EQ(link->stats().connections_opened, 0u);
}

TEST_F(LinkTest, ReconnectClosesFirstAndPausesBeforeTheNextConnection) {
  auto link = make_link(options(), false);
  link->connect();
  ASSERT_TRUE(run_until([&] { return link->is_open(); }, 10));
  link->reconnect();
  EXPECT_TRUE(link->reconnecting());
  ASSERT_TRUE(run_until([&] { return count(ConnectionState::closed) == 1; }, 5));
  EXPECT_TRUE(link->reconnecting()) << "the pause starts once the old connection is closed";
  ASSERT_TRUE(run_until([&] { return link->is_open(); }, 5));
  EXPECT_FALSE(link->reconnecting());
  // The owner heard the first connection end before the second began: open, closing, closed,
  // then the new one's states.
  ASSERT_GE(seen_.size(), 4u);
  EXPECT_EQ(seen_[0], ConnectionState::open);
  EXPECT_EQ(seen_[1], ConnectionState::closing);
  EXPECT_EQ(seen_[2], ConnectionState::closed);
  EXPECT_EQ(seen_.back(), ConnectionState::open);
  EXPECT_EQ(link->stats().connections_opened, 2u);
}

// An owner whose set-up fails on every connection (a queue declared with other arguments
// than the broker has: 406 each time) calls reconnect() at every open. The pauses grow as for a
// host that keeps failing: a connection that opens is not a success until the owner says so.
TEST_F(LinkTest, AnOwnerThatReconnectsAtEveryOpenIsPausedLongerEachTime) {
  auto link = std::make_unique<Link>(*loop_, options(), "link test");
  link->set_state_callback([&, l = link.get()](ConnectionState s, const Result&) {
    seen_.push_back(s);
    if (s == ConnectionState::open) l->reconnect();
  });
  link->connect();
  run_for(1.5);
  // Pauses of 0.05-0.1, 0.1-0.2, 0.2-0.4, 0.4-0.8 s: at most five connections in 1.5 s, where
  // a pause that starts short again after every open allows twenty.
  EXPECT_GE(count(ConnectionState::open), 2u);
  EXPECT_LE(count(ConnectionState::open), 5u);
}

TEST_F(LinkTest, AnOwnerThatIsReadyGetsAShortPauseAgain) {
  auto link = std::make_unique<Link>(*loop_, options(), "link test");
  link->set_state_callback([&, l = link.get()](ConnectionState s, const Result&) {
    seen_.push_back(s);
    if (s == ConnectionState::open && count(ConnectionState::open) < 4) l->reconnect();
  });
  link->connect();
  ASSERT_TRUE(run_until([&] { return count(ConnectionState::open) == 4; }, 10));
  link->ready();  // the fourth connection's set-up worked
  link->reconnect();
  ASSERT_TRUE(run_until([&] { return count(ConnectionState::closed) == 4; }, 5));
  const auto closed = std::chrono::steady_clock::now();
  ASSERT_TRUE(run_until([&] { return count(ConnectionState::open) == 5; }, 5));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - closed).count(), 0.5);
}

TEST_F(LinkTest, ADestroyedLinkNeverCallsBack) {
  auto link = make_link(options());
  link->connect();
  ASSERT_TRUE(run_until([&] { return link->is_open(); }, 10));
  const size_t before = seen_.size();
  link.reset();  // its connection closes and goes on a later pass, unheard
  run_for(0.3);
  EXPECT_EQ(seen_.size(), before);
}

TEST_F(LinkTest, TheOwnerMayDestroyTheLinkInsideItsCallback) {
  auto o = options();
  o.password = "wrong";
  auto link = std::make_unique<Link>(*loop_, o, "link test");
  Result why;
  link->set_state_callback([&](ConnectionState s, const Result& r) {
    if (s != ConnectionState::closed) return;
    why = r;
    link.reset();
  });
  link->connect();
  ASSERT_TRUE(run_until([&] { return !link; }, 10));
  run_for(0.1);  // the connection is freed on a later pass (ASan checks the order)
  EXPECT_EQ(why.outcome, Outcome::refused);
}

}  // namespace
}  // namespace warren::amqp::testing
