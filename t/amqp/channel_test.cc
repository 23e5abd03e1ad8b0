// Channels against a real RabbitMQ: declarations, pipelined publishes with confirms, consuming
// them back with typed headers, channel errors isolated per channel, returns, cancel, and pika
// (Debian's /usr/bin/python3) checking what we published from the outside.
#include <cstdio>

#include "t/amqp/broker_fixture.h"

namespace warren::amqp::testing {
namespace {

using nlohmann::json;

class ChannelTest : public BrokerTest {
 protected:
  void SetUp() override {
    BrokerTest::SetUp();
    if (IsSkipped()) return;
    conn_ = connect();
    ASSERT_EQ(conn_->state(), ConnectionState::open) << conn_->close_reason().text;
  }
  void TearDown() override {
    if (conn_) {
      conn_->close();
      run_until([&] { return conn_->state() == ConnectionState::closed; }, 5);
      conn_.reset();
    }
    BrokerTest::TearDown();
  }

  // Declares a fresh queue; returns its name.
  std::string declare_queue(Channel& ch, const std::string& name, bool exclusive = false) {
    std::string got;
    bool done = false;
    ch.declare_queue(name, false, exclusive, false, json::object(),
                     [&](const Result& r, const std::string& q, uint32_t, uint32_t) {
                       EXPECT_TRUE(r.ok()) << r.text;
                       got = q;
                       done = true;
                     });
    EXPECT_TRUE(run_until([&] { return done; }, 5));
    return got;
  }
  void delete_queue(Channel& ch, const std::string& name) {
    bool done = false;
    ch.delete_queue(name, [&](const Result&) { done = true; });
    run_until([&] { return done; }, 5);
  }

  std::unique_ptr<Connection> conn_;
};

Properties sample_properties(int i) {
  Properties p;
  p.content_type = "application/json";
  p.delivery_mode = 2;
  p.priority = 3;
  p.correlation_id = "c" + std::to_string(i);
  p.message_id = "m" + std::to_string(i);
  p.timestamp = 1700000000 + i;
  p.app_id = "warren-test";
  p.headers = json{{"i", i}, {"name", "n"}, {"f", 2.5}, {"b", true}, {"none", nullptr},
                   {"list", {1, "x"}}, {"obj", {{"k", "v"}}}};
  return p;
}

TEST_F(ChannelTest, ThousandPipelinedPublishesConfirmedThenConsumed) {
  auto ch = conn_->open_channel();
  std::string q = declare_queue(*ch, unique_name("warren-confirm"));
  const int n = 1000;
  int ok = 0, failed = 0;
  for (int i = 0; i < n; ++i)
    ch->publish("", q, false, sample_properties(i), "body " + std::to_string(i), 10,
                [&](const Result& r) { r.ok() ? ++ok : ++failed; });
  EXPECT_EQ(ok, 0);  // nothing is called back from inside publish()
  ASSERT_TRUE(run_until([&] { return ok + failed == n; }, 20));
  EXPECT_EQ(ok, n);
  EXPECT_EQ(ch->in_flight(), 0u);
  EXPECT_EQ(stats_.publish_confirmed, static_cast<uint64_t>(n));

  auto consumer = conn_->open_channel(false);
  std::vector<Delivery> got;
  std::string tag;
  Result ended{Outcome::timeout, 0, ""};
  consumer->consume(
      q, 50, false, false,
      [&](Delivery&& d) {
        consumer->ack(d.delivery_tag);
        got.push_back(std::move(d));
      },
      [&](const Result& r) { ended = r; },
      [&](const Result& r, const std::string& t) {
        EXPECT_TRUE(r.ok()) << r.text;
        tag = t;
      });
  ASSERT_TRUE(run_until([&] { return got.size() == static_cast<size_t>(n); }, 20)) << got.size();
  EXPECT_FALSE(tag.empty());
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(got[i].body, "body " + std::to_string(i));
    EXPECT_EQ(got[i].properties, sample_properties(i)) << got[i].properties.headers->dump();
    EXPECT_EQ(got[i].consumer_tag, tag);
    EXPECT_FALSE(got[i].redelivered);
  }
  Result cancelled{Outcome::timeout, 0, ""};
  consumer->cancel(tag, [&](const Result& r) { cancelled = r; });
  ASSERT_TRUE(run_until([&] { return cancelled.outcome != Outcome::timeout; }, 5));
  EXPECT_TRUE(cancelled.ok());
  EXPECT_TRUE(ended.ok());
  delete_queue(*ch, q);
}

TEST_F(ChannelTest, MissingExchangeClosesOnlyItsChannel) {
  auto bad = conn_->open_channel();
  auto good = conn_->open_channel();
  Result closed{Outcome::ok, -1, ""};
  bad->set_close_callback([&](const Result& r) { closed = r; });
  Result r{Outcome::ok, -1, ""};
  bad->publish("no-such-exchange", "x", false, {}, "lost", 5, [&](const Result& res) { r = res; });
  int ok = 0;
  for (int i = 0; i < 200; ++i)
    good->publish("", "nowhere", false, {}, "fine", 5, [&](const Result& res) { ok += res.ok(); });
  ASSERT_TRUE(run_until([&] { return r.code != -1 && ok == 200 && closed.code != -1; }, 10));
  EXPECT_EQ(r.outcome, Outcome::channel_error);
  EXPECT_EQ(r.code, 404) << r.text;
  EXPECT_NE(r.text.find("no-such-exchange"), std::string::npos);
  EXPECT_EQ(closed.code, 404);
  EXPECT_FALSE(bad->is_open());
  EXPECT_TRUE(conn_->is_open());
  // the closed channel answers at once (but not synchronously) with its reason
  Result late{Outcome::ok, -1, ""};
  bad->publish("", "x", false, {}, "late", 5, [&](const Result& res) { late = res; });
  EXPECT_EQ(late.code, -1);
  ASSERT_TRUE(run_until([&] { return late.code != -1; }, 1));
  EXPECT_EQ(late.code, 404);
  // and the good one keeps going
  Result more{Outcome::ok, -1, ""};
  good->publish("", "nowhere", false, {}, "more", 5, [&](const Result& res) { more = res; });
  ASSERT_TRUE(run_until([&] { return more.code != -1; }, 5));
  EXPECT_TRUE(more.ok());
}

TEST_F(ChannelTest, MandatoryUnroutableIsReturned) {
  auto ch = conn_->open_channel();
  std::string q = declare_queue(*ch, unique_name("warren-mandatory"));
  std::vector<Result> results(3, Result{Outcome::ok, -1, ""});
  ch->publish("", q, true, {}, "routable", 5, [&](const Result& r) { results[0] = r; });
  ch->publish("", "no-such-queue", true, {}, "lost", 5, [&](const Result& r) { results[1] = r; });
  ch->publish("", "no-such-queue", false, {}, "dropped", 5, [&](const Result& r) { results[2] = r; });
  ASSERT_TRUE(run_until([&] {
    for (auto& r : results)
      if (r.code == -1) return false;
    return true;
  }, 5));
  EXPECT_TRUE(results[0].ok()) << results[0].text;
  EXPECT_EQ(results[1].outcome, Outcome::returned);
  EXPECT_EQ(results[1].code, 312);
  EXPECT_EQ(results[1].text, "NO_ROUTE");
  EXPECT_TRUE(results[2].ok());
  EXPECT_EQ(stats_.publish_returned, 1u);
  delete_queue(*ch, q);
}

// RabbitMQ sends basic.return just before the confirm of the same message. A return must be
// pinned to that message's tag, never guessed from content: here the routed message and the
// returned one have the same exchange, routing key and body (amq.match routes on headers).
TEST_F(ChannelTest, ReturnBelongsToTheMessageItsConfirmSettles) {
  auto ch = conn_->open_channel();
  std::string q = declare_queue(*ch, unique_name("warren-match"));
  bool bound = false;
  ch->bind_queue(q, "amq.match", "", json{{"x-match", "all"}, {"route", "yes"}},
                 [&](const Result& r) { EXPECT_TRUE(r.ok()) << r.text; bound = true; });
  ASSERT_TRUE(run_until([&] { return bound; }, 5));
  // Pairs in one pipeline: the routed message first, so that its confirm (which waits for the
  // queue) is still due when the unroutable one's return arrives; and between them a message
  // that is not mandatory (it never waits for the others).
  constexpr int kPairs = 50;
  std::vector<Result> routed(kPairs, Result{Outcome::ok, -1, ""});
  std::vector<Result> dropped(kPairs, Result{Outcome::ok, -1, ""});
  std::vector<Result> plain(kPairs, Result{Outcome::ok, -1, ""});
  Properties to_queue, to_nowhere;
  to_queue.delivery_mode = to_nowhere.delivery_mode = 2;
  to_queue.headers = json{{"route", "yes"}};
  to_nowhere.headers = json{{"route", "no"}};
  for (int i = 0; i < kPairs; ++i) {
    ch->publish("amq.match", "", true, to_queue, "same body", 5, [&, i](const Result& r) { routed[i] = r; });
    ch->publish("amq.match", "", false, to_queue, "same body", 5, [&, i](const Result& r) { plain[i] = r; });
    ch->publish("amq.match", "", true, to_nowhere, "same body", 5, [&, i](const Result& r) { dropped[i] = r; });
  }
  ASSERT_TRUE(run_until([&] {
    for (int i = 0; i < kPairs; ++i)
      if (routed[i].code == -1 || dropped[i].code == -1 || plain[i].code == -1) return false;
    return true;
  }, 10));
  for (int i = 0; i < kPairs; ++i) {
    EXPECT_EQ(routed[i].outcome, Outcome::ok) << "pair " << i << ": " << routed[i].text;
    EXPECT_EQ(dropped[i].outcome, Outcome::returned) << "pair " << i;
    EXPECT_EQ(plain[i].outcome, Outcome::ok) << "pair " << i << ": " << plain[i].text;
  }
  EXPECT_EQ(stats_.publish_returned, static_cast<uint64_t>(kPairs));
  EXPECT_EQ(stats_.publish_confirmed, static_cast<uint64_t>(2 * kPairs));
  delete_queue(*ch, q);
}

// A pool that lets a channel go must not leak it on the broker (channel_max is 2047): the
// handle's last copy closes it on the wire, and its number stays taken until close-ok.
TEST_F(ChannelTest, DroppedHandleClosesTheChannelOnTheWire) {
  auto ch = conn_->open_channel();
  bool declared = false;
  ch->declare_exchange("amq.direct", "direct", true, false, json::object(),
                       [&](const Result& r) { EXPECT_TRUE(r.ok()) << r.text; declared = true; });
  ASSERT_TRUE(run_until([&] { return declared; }, 5));
  const uint64_t closed_before = stats_.channels_closed;
  ASSERT_EQ(conn_->channel_count(), 1u);
  ch.reset();
  EXPECT_EQ(conn_->channel_count(), 1u) << "the number was freed before the broker's close-ok";
  ASSERT_TRUE(run_until([&] { return conn_->channel_count() == 0; }, 5));
  EXPECT_EQ(stats_.channels_closed, closed_before + 1);
  EXPECT_EQ(conn_->state(), ConnectionState::open);
}

TEST_F(ChannelTest, DeclareErrorsCarryTheBrokersCode) {
  auto ch = conn_->open_channel(false);
  Result r{Outcome::ok, -1, ""};
  // amq.* names are reserved: 403 ACCESS_REFUSED
  ch->declare_exchange("amq.warren-test", "direct", false, false, json::object(),
                       [&](const Result& res) { r = res; });
  ASSERT_TRUE(run_until([&] { return r.code != -1; }, 5));
  EXPECT_EQ(r.outcome, Outcome::channel_error);
  EXPECT_EQ(r.code, 403) << r.text;

  auto ch2 = conn_->open_channel(false);
  Result bind{Outcome::ok, -1, ""};
  ch2->bind_queue("no-such-queue", "amq.direct", "k", nullptr, [&](const Result& res) { bind = res; });
  ASSERT_TRUE(run_until([&] { return bind.code != -1; }, 5));
  EXPECT_EQ(bind.code, 404) << bind.text;
}

TEST_F(ChannelTest, ServerNamedQueueAndInvalidHeaders) {
  auto ch = conn_->open_channel();
  std::string q = declare_queue(*ch, "", true);
  EXPECT_EQ(q.rfind("amq.gen-", 0), 0u) << q;
  Properties p;
  p.headers = json{{"huge", 18446744073709551615ULL}};
  Result r{Outcome::ok, -1, ""};
  ch->publish("", q, false, p, "x", 5, [&](const Result& res) { r = res; });
  ASSERT_TRUE(run_until([&] { return r.code != -1; }, 1));
  EXPECT_EQ(r.outcome, Outcome::invalid);
  EXPECT_NE(r.text.find("huge"), std::string::npos) << r.text;
  EXPECT_TRUE(ch->is_open());
}

TEST_F(ChannelTest, PublishesBeforeOpenWaitThenGo) {
  auto c = std::make_unique<Connection>(*loop_, options(), &stats_);
  c->start();
  auto ch = c->open_channel();
  Result r{Outcome::ok, -1, ""};
  ch->publish("", "nowhere", false, {}, "early", 5, [&](const Result& res) { r = res; });
  ASSERT_TRUE(run_until([&] { return r.code != -1; }, 10));
  EXPECT_TRUE(r.ok()) << r.text;
  // and when the connection goes away, pending work hears connection_lost
  Result lost{Outcome::ok, -1, ""};
  ch->declare_queue("", false, true, true, nullptr,
                    [&](const Result& res, const std::string&, uint32_t, uint32_t) { lost = res; });
  c.reset();
  ASSERT_TRUE(run_until([&] { return lost.code != -1; }, 1));
  EXPECT_EQ(lost.outcome, Outcome::connection_lost);
}

TEST_F(ChannelTest, BrokerCancelEndsTheConsumer) {
  auto ch = conn_->open_channel(false);
  std::string q = declare_queue(*ch, unique_name("warren-cancel"));
  Result ended{Outcome::ok, -1, ""};
  std::string tag;
  ch->consume(q, 10, false, false, [](Delivery&&) {}, [&](const Result& r) { ended = r; },
              [&](const Result&, const std::string& t) { tag = t; });
  ASSERT_TRUE(run_until([&] { return !tag.empty(); }, 5));
  auto other = conn_->open_channel(false);
  delete_queue(*other, q);
  ASSERT_TRUE(run_until([&] { return ended.code != -1; }, 5));
  EXPECT_EQ(ended.outcome, Outcome::channel_error);
  EXPECT_TRUE(ch->is_open());
}

TEST_F(ChannelTest, RejectRequeuesAndNackDrops) {
  auto ch = conn_->open_channel();
  std::string q = declare_queue(*ch, unique_name("warren-reject"));
  int confirmed = 0;
  for (const char* body : {"one", "two"})
    ch->publish("", q, false, {}, body, 5, [&](const Result& r) { confirmed += r.ok(); });
  ASSERT_TRUE(run_until([&] { return confirmed == 2; }, 5));
  auto consumer = conn_->open_channel(false);
  std::vector<std::pair<std::string, bool>> seen;  // body, redelivered
  consumer->consume(q, 1, false, false, [&](Delivery&& d) {
    seen.emplace_back(d.body, d.redelivered);
    if (seen.size() == 1) consumer->reject(d.delivery_tag, true);       // back to the queue
    else if (d.body == "one") consumer->ack(d.delivery_tag);
    else consumer->nack(d.delivery_tag, false, false);                  // dropped
  }, nullptr, nullptr);
  ASSERT_TRUE(run_until([&] { return seen.size() == 3; }, 5));
  EXPECT_EQ(seen[0], std::make_pair(std::string("one"), false));
  EXPECT_EQ(seen[1], std::make_pair(std::string("one"), true));
  EXPECT_EQ(seen[2], std::make_pair(std::string("two"), false));
  uint32_t left = 99;
  bool done = false;
  run_for(0.2);
  ch->declare_queue(q, false, false, false, nullptr,
                    [&](const Result&, const std::string&, uint32_t messages, uint32_t) {
                      left = messages;
                      done = true;
                    });
  ASSERT_TRUE(run_until([&] { return done; }, 5));
  EXPECT_EQ(left, 0u);
  delete_queue(*ch, q);
}

// pika, the reference Python client, reads what warren published and publishes what warren
// must decode.
std::string run_python(const std::string& script) {
  std::string cmd = "/usr/bin/python3 -c '" + script + "' 2>&1";
  std::string out;
  if (FILE* f = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
    pclose(f);
  }
  return out;
}

TEST_F(ChannelTest, PikaSeesTypedHeadersAndWeSeePikas) {
  if (run_python("import pika").find("Error") != std::string::npos) GTEST_SKIP() << "no pika";
  auto ch = conn_->open_channel();
  std::string q = declare_queue(*ch, unique_name("warren-pika"));
  Result r{Outcome::ok, -1, ""};
  ch->publish("", q, false, sample_properties(7), "from warren", 5, [&](const Result& res) { r = res; });
  ASSERT_TRUE(run_until([&] { return r.code != -1; }, 5));
  ASSERT_TRUE(r.ok());
  std::string port = std::to_string(port_);
  std::string out = run_python(
      "import pika, json, decimal, datetime\n"
      "c = pika.BlockingConnection(pika.ConnectionParameters(\"127.0.0.1\", " + port + "))\n"
      "ch = c.channel()\n"
      "m, p, body = ch.basic_get(\"" + q + "\", auto_ack=True)\n"
      "h = p.headers\n"
      "print(json.dumps({\"body\": body.decode(), \"types\": {k: type(v).__name__ for k, v in h.items()},"
      " \"headers\": h, \"ct\": p.content_type, \"ts\": p.timestamp, \"prio\": p.priority,"
      " \"mode\": p.delivery_mode, \"mid\": p.message_id}, sort_keys=True))\n"
      "ch.basic_publish(\"\", \"" + q + "\", b\"from pika\", pika.BasicProperties(headers={"
      "\"int\": 5, \"big\": 2**40, \"dec\": decimal.Decimal(\"1.25\"), \"t\": True, \"s\": \"str\", \"when\": datetime.datetime.utcfromtimestamp(1700000000), \"l\": [1, 2], \"d\": {\"a\": 1}},"
      " content_type=\"text/plain\", correlation_id=\"pc\"))\n"
      "c.close()\n");
  json seen = json::parse(out, nullptr, false);
  ASSERT_FALSE(seen.is_discarded()) << out;
  EXPECT_EQ(seen["body"], "from warren");
  // pika 1.2 reads 'l' (signed 64-bit) as its `long` (an int) and truncates 'd' (double) to a
  // long (pika/data.py decode_value): 2.5 arrives as 2. The kinds on the wire are still right.
  json expected = *sample_properties(7).headers;
  expected["f"] = 2;
  EXPECT_EQ(seen["headers"], expected);
  EXPECT_EQ(seen["types"],
            json({{"i", "long"}, {"name", "str"}, {"f", "long"}, {"b", "bool"}, {"none", "NoneType"},
                  {"list", "list"}, {"obj", "dict"}}));
  EXPECT_EQ(seen["ct"], "application/json");
  EXPECT_EQ(seen["ts"], 1700000007);
  EXPECT_EQ(seen["prio"], 3);
  EXPECT_EQ(seen["mode"], 2);
  EXPECT_EQ(seen["mid"], "m7");

  std::optional<Delivery> got;
  ch->consume(q, 0, true, false, [&](Delivery&& d) { got = std::move(d); }, nullptr, nullptr);
  ASSERT_TRUE(run_until([&] { return got.has_value(); }, 5));
  EXPECT_EQ(got->body, "from pika");
  EXPECT_EQ(got->properties.content_type, "text/plain");
  EXPECT_EQ(got->properties.correlation_id, "pc");
  EXPECT_EQ(*got->properties.headers,
            json({{"int", 5}, {"big", 1LL << 40}, {"dec", 1.25}, {"t", true}, {"s", "str"},
                  {"when", 1700000000}, {"l", {1, 2}}, {"d", {{"a", 1}}}}));
  delete_queue(*ch, q);
}

}  // namespace
}  // namespace warren::amqp::testing
