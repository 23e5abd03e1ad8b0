// Forwarding's consume loop against a real RabbitMQ, with a scripted backend in place of HTTP
// (core/backend.h): a 500 is retried and the message acked once after the 200; a 400 is
// rejected without requeue (no dead_letter_exchange); a request id seen before is acked
// without calling the backend; a message the backend answers itself is never started. What
// is left in the queue is checked once the forwarder's connection is gone, so an unacked
// message would show there.
#include "core/forwarder.h"

#include <deque>
#include <vector>

#include "t/amqp/broker_fixture.h"

namespace warren::core {
namespace {

using amqp::testing::BrokerTest;
using nlohmann::json;

// Answers attempts with its script's statuses in turn (200 once it runs out), from the loop.
// A message whose body is "unreadable" is answered 400 by the backend itself; a message_id is
// the request's unique id.
class ScriptedBackend final : public Backend {
 public:
  ScriptedBackend(Loop& loop, std::deque<int> script) : loop_(loop), script_(std::move(script)) {}

  std::unique_ptr<BackendJob> prepare(const amqp::Delivery& message) override {
    auto job = std::make_unique<Job>(*this, message.body);
    if (message.body == "unreadable") {
      job->answered = BackendAnswer{.status = 400, .error = "", .excerpt = "bad", .seconds = 0};
      job->invalid = true;
      job->note = "not readable";
    }
    job->unique_id = message.properties.message_id.value_or("");
    return job;
  }
  std::string describe() const override { return "the scripted backend"; }

  std::vector<std::string> calls;  // each attempt's message body

 private:
  struct Job final : BackendJob {
    Job(ScriptedBackend& backend, std::string body) : backend(backend), body(std::move(body)) {}
    void start(Done done) override {
      backend.calls.push_back(body);
      int status = 200;
      if (!backend.script_.empty()) {
        status = backend.script_.front();
        backend.script_.pop_front();
      }
      backend.loop_.defer([alive = life_.watch(), done = std::move(done), status] {
        if (!alive.expired()) done(BackendAnswer{.status = status, .error = "", .excerpt = "", .seconds = 0.001});
      });
    }
    std::optional<Message> reply(const amqp::Delivery&) const override { return std::nullopt; }

    ScriptedBackend& backend;
    std::string body;
    LifeToken life_;
  };

  Loop& loop_;
  std::deque<int> script_;
};

class ForwarderTest : public BrokerTest {
 protected:
  void SetUp() override {
    BrokerTest::SetUp();
    if (IsSkipped()) return;
    queue_ = unique_name("warren-forwarder");
    conn_ = connect();
    ASSERT_EQ(conn_->state(), amqp::ConnectionState::open) << conn_->close_reason().text;
    channel_ = conn_->open_channel();
  }
  void TearDown() override {
    forwarder_.reset();
    if (conn_) {
      bool done = false;
      channel_->delete_queue(queue_, [&](const amqp::Result&) { done = true; });
      run_until([&] { return done; }, 5);
      conn_->close();
      run_until([&] { return conn_->state() == amqp::ConnectionState::closed; }, 5);
    }
    BrokerTest::TearDown();
  }

  // A forwarder of queue_ (which it declares) to `backend`, consuming.
  void start(Backend& backend) {
    ForwarderOptions o;
    o.name = "test";
    o.broker = options();
    o.broker.connection_name = unique_name("warren-forwarder-test");
    ConsumeQueue q;
    q.queue = queue_;
    q.declare = true;
    o.plan = {q};
    o.retry.max_attempts = 3;
    o.retry.initial_delay = o.retry.max_delay = 0.05;
    forwarder_ = std::make_unique<Forwarder>(*loop_, std::move(o), backend, counters_, latency_);
    forwarder_->start();
    ASSERT_TRUE(run_until([&] { return forwarder_->consuming(); }, 10));
  }

  void publish(const std::string& body, std::optional<std::string> message_id = std::nullopt) {
    amqp::Properties p;
    p.message_id = std::move(message_id);
    bool confirmed = false;
    channel_->publish("", queue_, true, p, body, 5, [&](const amqp::Result& r) {
      EXPECT_TRUE(r.ok()) << r.text;
      confirmed = true;
    });
    ASSERT_TRUE(run_until([&] { return confirmed; }, 5));
  }

  // Messages ready in queue_ once the forwarder is gone: what it had not acked is back. Not
  // close(), which sends the acks still batched: those must have gone out already.
  uint32_t left_in_queue() {
    run_for(0.05);
    forwarder_.reset();
    run_for(0.3);
    uint32_t ready = 0;
    bool done = false;
    channel_->declare_queue(queue_, false, false, false, json::object(),
                            [&](const amqp::Result& r, const std::string&, uint32_t messages, uint32_t) {
                              EXPECT_TRUE(r.ok()) << r.text;
                              ready = messages;
                              done = true;
                            });
    EXPECT_TRUE(run_until([&] { return done; }, 5));
    return ready;
  }

  std::string queue_;
  std::unique_ptr<amqp::Connection> conn_;
  std::shared_ptr<amqp::Channel> channel_;
  ForwarderCounters counters_;
  Histogram latency_;
  std::unique_ptr<Forwarder> forwarder_;
};

TEST_F(ForwarderTest, A500IsRetriedAndTheMessageAckedOnceAfterThe200) {
  ScriptedBackend backend(*loop_, {500});
  start(backend);
  publish("work");
  ASSERT_TRUE(run_until([&] { return counters_.acked == 1; }, 5));
  run_for(0.2);  // nothing more happens to it
  EXPECT_EQ(backend.calls, (std::vector<std::string>{"work", "work"}));
  EXPECT_EQ(counters_.consumed, 1u);
  EXPECT_EQ(counters_.retried, 1u);
  EXPECT_EQ(counters_.acked, 1u);
  EXPECT_EQ(counters_.status_5xx, 1u);
  EXPECT_EQ(counters_.status_2xx, 1u);
  EXPECT_EQ(counters_.dead_lettered, 0u);
  EXPECT_EQ(latency_.count, 2u);
  EXPECT_EQ(forwarder_->in_flight(), 0u);
  EXPECT_EQ(left_in_queue(), 0u);
}

TEST_F(ForwarderTest, RetriesExhaustedOrA400RejectTheMessageWithoutRequeue) {
  ScriptedBackend backend(*loop_, {400, 503, 503, 503});
  start(backend);
  publish("refused");
  ASSERT_TRUE(run_until([&] { return counters_.dead_lettered == 1; }, 5));
  publish("failing");
  ASSERT_TRUE(run_until([&] { return counters_.dead_lettered == 2; }, 5));
  run_for(0.2);
  EXPECT_EQ(backend.calls, (std::vector<std::string>{"refused", "failing", "failing", "failing"}));
  EXPECT_EQ(counters_.retried, 2u);  // max_attempts 3: two retries, then no more
  EXPECT_EQ(counters_.acked, 0u);
  EXPECT_EQ(counters_.requeued, 0u);
  EXPECT_EQ(left_in_queue(), 0u);
}

TEST_F(ForwarderTest, ARepeatedRequestIdIsAckedWithoutCallingTheBackend) {
  ScriptedBackend backend(*loop_, {});
  start(backend);
  publish("first", "id-1");
  publish("again", "id-1");
  publish("other", "id-2");
  ASSERT_TRUE(run_until([&] { return counters_.acked == 3; }, 5));
  EXPECT_EQ(backend.calls, (std::vector<std::string>{"first", "other"}));
  EXPECT_EQ(counters_.duplicates, 1u);
  EXPECT_EQ(left_in_queue(), 0u);
}

TEST_F(ForwarderTest, AMessageTheBackendAnswersItselfIsNeverStarted) {
  ScriptedBackend backend(*loop_, {});
  start(backend);
  publish("unreadable");
  ASSERT_TRUE(run_until([&] { return counters_.dead_lettered == 1; }, 5));
  EXPECT_TRUE(backend.calls.empty());
  EXPECT_EQ(counters_.invalid, 1u);
  EXPECT_EQ(counters_.status_4xx, 0u);  // no backend answered
  EXPECT_EQ(left_in_queue(), 0u);
}

}  // namespace
}  // namespace warren::core
