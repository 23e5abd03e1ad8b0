// config.cc: defaults, every key, every class of error with its file:line and key, restart keys,
// the key table, and the sample etc/warren.yml (tests run from the repo root).
#include "config.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>

namespace warren {
namespace {

std::vector<std::string> errors_of(const std::string& text) {
  auto result = config_parse(text, "warren.yml");
  EXPECT_EQ(result.config == nullptr, !result.errors.empty());
  std::vector<std::string> out;
  for (const auto& e : result.errors) out.push_back(e.text());
  return out;
}

std::shared_ptr<const Config> parse_ok(const std::string& text) {
  auto result = config_parse(text, "warren.yml");
  for (const auto& e : result.errors) ADD_FAILURE() << e.text();
  EXPECT_NE(result.config, nullptr);
  return result.config ? result.config : std::make_shared<const Config>();
}

// The one error a text has, as "file:line: key: problem".
std::string only_error(const std::string& text) {
  auto errors = errors_of(text);
  EXPECT_EQ(errors.size(), 1u) << ::testing::PrintToString(errors);
  return errors.empty() ? "" : errors[0];
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "\"" << part << "\" not in \"" << text << "\"";
}

TEST(Config, EmptyFileGivesDefaults) {
  for (const char* text : {"", "# only a comment\n", "---\n", "daemon:\n"}) {
    auto c = parse_ok(text);
    EXPECT_EQ(c->path, "warren.yml");
    EXPECT_EQ(c->daemon.pidfile, "/run/warren/warrend.pid");
    EXPECT_EQ(c->daemon.user, "warren");
    EXPECT_EQ(c->daemon.shutdown_timeout, 10);
    ASSERT_EQ(c->broker.hosts.size(), 1u);
    EXPECT_EQ(c->broker.hosts[0], (BrokerHost{"127.0.0.1", 5672}));
    EXPECT_EQ(c->broker.vhost, "/");
    EXPECT_EQ(c->broker.heartbeat, 30);
    EXPECT_FALSE(c->broker.tls.enabled);
    EXPECT_TRUE(c->broker.tls.verify);
    EXPECT_EQ(c->http.listen, "127.0.0.1");
    EXPECT_EQ(c->http.ports, std::vector<int>{8000});
    EXPECT_EQ(c->http.max_body, 1048576u);
    EXPECT_TRUE(c->http.keep_alive);
    EXPECT_EQ(c->http.max_header_size, 16384u);
    EXPECT_EQ(c->http.request_timeout, 30);
    EXPECT_EQ(c->broker.max_connections, 64);
    EXPECT_TRUE(c->forwarders.empty());
    EXPECT_EQ(c->rpc.timeout, 60);
    EXPECT_EQ(c->logging.level, "info");
    EXPECT_EQ(c->logging.syslog_facility, "");
  }
}

TEST(Config, SomeSectionsOnly) {
  auto c = parse_ok("broker:\n  port: 5673\nhttp:\n  ports: [9000]\n");
  EXPECT_EQ(c->broker.hosts[0], (BrokerHost{"127.0.0.1", 5673}));
  EXPECT_EQ(c->http.ports, std::vector<int>{9000});
  EXPECT_EQ(c->http.workers_per_port, usable_cores());  // auto, the default
  EXPECT_EQ(c->daemon.group, "warren");
}

TEST(Config, WorkersPerPortAutoIsOnePerUsableCore) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(usable_cores(), CPU_COUNT(&set));
  EXPECT_EQ(parse_ok("http:\n  workers_per_port: auto\n")->http.workers_per_port, CPU_COUNT(&set));
  EXPECT_EQ(parse_ok("http:\n  workers_per_port: 3\n")->http.workers_per_port, 3);
  EXPECT_EQ(only_error("http:\n  workers_per_port: \"auto\"\n"),
            "warren.yml:2: http.workers_per_port: expected an integer or auto, got a quoted string \"auto\"");
  EXPECT_EQ(only_error("http:\n  workers_per_port: many\n"),
            "warren.yml:2: http.workers_per_port: expected an integer or auto, got \"many\"");
}

const char* kFull = R"(daemon:
  pidfile: /tmp/w.pid
  user: nobody
  group: nogroup
  control_socket: /tmp/w.sock
  shutdown_timeout: 2.5
broker:
  hosts: [rabbit1, "rabbit2:5673", "[::1]", "[::1]:5674"]
  port: 5671
  vhost: /prod
  username: svc
  password: 's3cr:t'
  heartbeat: 0
  connect_timeout: 0.25
  tls:
    enabled: no
    ca: /nonexistent/ca.pem
    cert: ""
    key: ""
    verify: false
http:
  listen: 0.0.0.0
  ports:
    - 8100
    - 8101
  workers_per_port: 4
  max_body: 65536
  confirm_timeout: 1.5
  idle_connection_timeout: 0
  keep_alive: false
forwarders:
  - name: vcd1
    queue_set: vcd
    vhost: /ext
    queue: q1
    declare:
      exchange: {name: vcdext, type: topic, durable: false}
      queue:
        durable: false
        arguments: {x-queue-type: quorum, x-max-length: 10, x-flag: true, x-ratio: 0.5, x-str: "10"}
      bindings: [a, b]
    format: vcd
    backend: {url: "https://127.0.0.1:9443/api", username: u, password: p, ca: "", cert: "", key: "", verify: yes, timeout: 3}
    rewrite: {from: "^/api/(.*)$", to: "/$1"}
    prefetch: 8
    retry: {max_attempts: 3, initial_delay: 0.5, max_delay: 4}
    dead_letter_exchange: dlx
    vcd: {extension: ext1, required_rights: [urn:r1, urn:r2], allowed_orgs: [org1]}
    oslo: {exchange: nova, topic: compute, server: host1}
  - name: rpc1
    queue_set: rpc
    format: oslo
    backend:
      url: http://127.0.0.1:9000/
    oslo:
      topic: compute
rpc:
  timeout: 30
logging:
  level: debug
  syslog_facility: local3
)";

TEST(Config, FullConfigWithEveryKey) {
  auto c = parse_ok(kFull);
  EXPECT_EQ(c->daemon.pidfile, "/tmp/w.pid");
  EXPECT_EQ(c->daemon.user, "nobody");
  EXPECT_EQ(c->daemon.group, "nogroup");
  EXPECT_EQ(c->daemon.control_socket, "/tmp/w.sock");
  EXPECT_EQ(c->daemon.shutdown_timeout, 2.5);
  EXPECT_EQ(c->broker.hosts,
            (std::vector<BrokerHost>{
                {"rabbit1", 5671}, {"rabbit2", 5673}, {"::1", 5671}, {"::1", 5674}}));
  EXPECT_EQ(c->broker.port, 5671);
  EXPECT_EQ(c->broker.vhost, "/prod");
  EXPECT_EQ(c->broker.username, "svc");
  EXPECT_EQ(c->broker.password, "s3cr:t");
  EXPECT_EQ(c->broker.heartbeat, 0);
  EXPECT_EQ(c->broker.connect_timeout, 0.25);
  EXPECT_FALSE(c->broker.tls.enabled);  // so the missing CA file is not an error
  EXPECT_EQ(c->broker.tls.ca, "/nonexistent/ca.pem");
  EXPECT_FALSE(c->broker.tls.verify);
  EXPECT_EQ(c->http.listen, "0.0.0.0");
  EXPECT_EQ(c->http.ports, (std::vector<int>{8100, 8101}));
  EXPECT_EQ(c->http.workers_per_port, 4);
  EXPECT_EQ(c->http.max_body, 65536u);
  EXPECT_EQ(c->http.confirm_timeout, 1.5);
  EXPECT_EQ(c->http.idle_connection_timeout, 0);
  EXPECT_FALSE(c->http.keep_alive);
  ASSERT_EQ(c->forwarders.size(), 2u);
  const auto& f = c->forwarders[0];
  EXPECT_EQ(f.name, "vcd1");
  EXPECT_EQ(f.queue_set, "vcd");
  EXPECT_EQ(f.vhost, "/ext");
  EXPECT_EQ(f.queue, "q1");
  EXPECT_TRUE(f.declare.enabled);
  EXPECT_EQ(f.declare.exchange_name, "vcdext");
  EXPECT_EQ(f.declare.exchange_type, "topic");
  EXPECT_FALSE(f.declare.exchange_durable);
  EXPECT_FALSE(f.declare.queue_durable);
  EXPECT_EQ(f.declare.bindings, (std::vector<std::string>{"a", "b"}));
  const auto& args = f.declare.queue_arguments;
  ASSERT_EQ(args.size(), 5u);
  EXPECT_EQ(args.at("x-queue-type").kind, ArgValue::Kind::string);
  EXPECT_EQ(args.at("x-queue-type").text, "quorum");
  EXPECT_EQ(args.at("x-max-length").kind, ArgValue::Kind::integer);
  EXPECT_EQ(args.at("x-max-length").integer, 10);
  EXPECT_EQ(args.at("x-flag").kind, ArgValue::Kind::boolean);
  EXPECT_TRUE(args.at("x-flag").boolean);
  EXPECT_EQ(args.at("x-ratio").kind, ArgValue::Kind::real);
  EXPECT_EQ(args.at("x-ratio").real, 0.5);
  EXPECT_EQ(args.at("x-str").kind, ArgValue::Kind::string);  // quoted: stays a string
  EXPECT_EQ(args.at("x-str").text, "10");
  EXPECT_EQ(f.format, ForwarderFormat::vcd);
  EXPECT_EQ(f.backend.url, "https://127.0.0.1:9443/api");
  EXPECT_EQ(f.backend.username, "u");
  EXPECT_EQ(f.backend.password, "p");
  EXPECT_TRUE(f.backend.verify);
  EXPECT_EQ(f.backend.timeout, 3);
  EXPECT_EQ(f.rewrite_from, "^/api/(.*)$");
  EXPECT_EQ(f.rewrite_to, "/$1");
  EXPECT_EQ(f.prefetch, 8);
  EXPECT_EQ(f.retry.max_attempts, 3);
  EXPECT_EQ(f.retry.initial_delay, 0.5);
  EXPECT_EQ(f.retry.max_delay, 4);
  EXPECT_EQ(f.dead_letter_exchange, "dlx");
  EXPECT_EQ(f.vcd.extension, "ext1");
  EXPECT_EQ(f.vcd.required_rights, (std::vector<std::string>{"urn:r1", "urn:r2"}));
  EXPECT_EQ(f.vcd.allowed_orgs, std::vector<std::string>{"org1"});
  EXPECT_EQ(f.oslo.exchange, "nova");
  EXPECT_EQ(f.oslo.topic, "compute");
  EXPECT_EQ(f.oslo.server, "host1");
  const auto& g = c->forwarders[1];
  EXPECT_EQ(g.name, "rpc1");
  EXPECT_FALSE(g.declare.enabled);
  EXPECT_EQ(g.format, ForwarderFormat::oslo);
  EXPECT_EQ(g.queue, "");  // oslo forwarders name their queues after the topic
  EXPECT_EQ(g.prefetch, 64);
  EXPECT_EQ(g.oslo.exchange, "openstack");
  EXPECT_EQ(c->rpc.timeout, 30);
  EXPECT_EQ(c->logging.level, "debug");
  EXPECT_EQ(c->logging.syslog_facility, "local3");
}

TEST(Config, ErrorTextFormat) {
  EXPECT_EQ((ConfigError{"w.yml", 3, "http.ports[1]", "bad"}).text(),
            "w.yml:3: http.ports[1]: bad");
  EXPECT_EQ((ConfigError{"w.yml", 0, "", "cannot read"}).text(), "w.yml: cannot read");
}

TEST(Config, WrongTypeHasFileLineAndKey) {
  std::string text;
  for (int i = 1; i <= 10; ++i) text += "# line " + std::to_string(i) + "\n";
  text += "http:\n  ports: [eight, 8001]\n";  // lines 11 and 12
  EXPECT_EQ(only_error(text), "warren.yml:12: http.ports[0]: expected an integer, got \"eight\"");
}

TEST(Config, WrongTypes) {
  EXPECT_EQ(only_error("http:\n  keep_alive: maybe\n"),
            "warren.yml:2: http.keep_alive: expected a boolean (true/false/yes/no), got \"maybe\"");
  EXPECT_EQ(only_error("http:\n  keep_alive: \"true\"\n"),
            "warren.yml:2: http.keep_alive: expected a boolean (true/false/yes/no), got a quoted "
            "string \"true\"");
  EXPECT_EQ(only_error("broker:\n  port: 56.72\n"),
            "warren.yml:2: broker.port: expected an integer, got \"56.72\"");
  EXPECT_EQ(only_error("broker:\n  port: \"5672\"\n"),
            "warren.yml:2: broker.port: expected an integer, got a quoted string \"5672\"");
  EXPECT_EQ(only_error("broker:\n  port: 99999999999999999999\n"),
            "warren.yml:2: broker.port: 99999999999999999999 is out of range (-2147483648 to "
            "2147483647)");
  EXPECT_EQ(only_error("broker:\n  port:\n"),
            "warren.yml:2: broker.port: expected an integer, got nothing");
  EXPECT_EQ(only_error("http:\n  max_body: -1\n"),
            "warren.yml:2: http.max_body: -1 is out of range (0 to 18446744073709551615)");
  EXPECT_EQ(only_error("http:\n  confirm_timeout: soon\n"),
            "warren.yml:2: http.confirm_timeout: expected a number of seconds, got \"soon\"");
  EXPECT_EQ(only_error("http:\n  confirm_timeout: .inf\n"),
            "warren.yml:2: http.confirm_timeout: expected a number of seconds, got \".inf\"");
  EXPECT_EQ(only_error("broker:\n  vhost: [a]\n"),
            "warren.yml:2: broker.vhost: expected a string, got a list");
  EXPECT_EQ(only_error("http:\n  ports: 8000\n"),
            "warren.yml:2: http.ports: expected a list, got \"8000\"");
  EXPECT_EQ(only_error("broker: 5\n"), "warren.yml:1: broker: expected a mapping, got \"5\"");
  EXPECT_EQ(only_error("- a\n- b\n"), "warren.yml:1: expected a mapping, got a list");
  EXPECT_EQ(only_error("forwarders: {name: x}\n"),
            "warren.yml:1: forwarders: expected a list, got a mapping");
  EXPECT_EQ(only_error("forwarders: [x]\n"),
            "warren.yml:1: forwarders[0]: expected a mapping, got \"x\"");
  EXPECT_EQ(only_error("forwarders:\n  - name: f\n    queue: q\n    backend: {url: http://h/}\n"
                       "    declare: {queue: {arguments: {x-a: [1]}}}\n"),
            "warren.yml:5: forwarders[0].declare.queue.arguments.x-a: expected a string, number "
            "or boolean, got a list");
  // Numbers are fine where a string is expected: they are kept as written.
  EXPECT_EQ(parse_ok("broker:\n  password: 1234\n")->broker.password, "1234");
  EXPECT_EQ(parse_ok("broker:\n  port: +5673\n")->broker.port, 5673);
  EXPECT_EQ(parse_ok("rpc:\n  timeout: 7\n")->rpc.timeout, 7);
  EXPECT_TRUE(parse_ok("http:\n  keep_alive: Yes\n")->http.keep_alive);
}

TEST(Config, UnknownKeys) {
  EXPECT_EQ(only_error("deamon:\n  user: x\n"), "warren.yml:1: deamon: unknown key");
  EXPECT_EQ(only_error("broker:\n  tls:\n    enable: true\n"),
            "warren.yml:3: broker.tls.enable: unknown key");
  EXPECT_EQ(only_error("http:\n  ports: [1]\n  port: 2\n"), "warren.yml:3: http.port: unknown key");
  EXPECT_EQ(
      only_error("forwarders:\n  - name: f\n    queue: q\n    backend:\n      url: http://h/\n"
                 "      urll: x\n"),
      "warren.yml:6: forwarders[0].backend.urll: unknown key");
  // A section name is not a value and a key is not a section.
  EXPECT_EQ(only_error("broker:\n  tls: true\n"),
            "warren.yml:2: broker.tls: expected a mapping, got \"true\"");
  EXPECT_EQ(only_error("rpc:\n  timeout:\n    x: 1\n"),
            "warren.yml:3: rpc.timeout: expected a number of seconds, got a mapping");
}

TEST(Config, DuplicateKeys) {
  EXPECT_EQ(only_error("http:\n  listen: a\n  listen: b\n"),
            "warren.yml:3: http.listen: duplicate key");
}

TEST(Config, SyntaxErrorHasLine) {
  auto errors = errors_of("http:\n  ports: [8000\nlogging:\n  level: info\n");
  ASSERT_EQ(errors.size(), 1u);
  expect_contains(errors[0], "warren.yml:3: YAML syntax error: ");
  errors = errors_of("http:\n  listen: a\n   ports: b: c\n");
  ASSERT_EQ(errors.size(), 1u);
  expect_contains(errors[0], "warren.yml:3: YAML syntax error: mapping values are not allowed");
  EXPECT_EQ(only_error("a: 1\n---\nb: 2\n"), "warren.yml:2: only one YAML document is allowed");
  EXPECT_EQ(only_error("x: *nope\n").substr(0, 13), "warren.yml:1:");
}

TEST(Config, AliasesAndLimits) {
  auto c = parse_ok("broker:\n  username: &u svc\n  password: *u\n");
  EXPECT_EQ(c->broker.password, "svc");
  // Exponential alias expansion is refused, not followed.
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char n = 'b', p = 'a'; n <= 'h'; p = n++)
    bomb += fmt::format("{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n", n, n, p, p,
                        p, p, p, p, p, p, p, p);
  expect_contains(only_error(bomb), "more than 100000 YAML nodes");
  expect_contains(only_error(std::string(200, '[') + std::string(200, ']')),
                  "nested deeper than 64 levels");
}

TEST(Config, BrokerHosts) {
  auto c =
      parse_ok("broker:\n  port: 5673\n  hosts: [a, \"b:5674\", \"[::1]\", \"[fe80::1]:5675\"]\n");
  EXPECT_EQ(c->broker.hosts,
            (std::vector<BrokerHost>{{"a", 5673}, {"b", 5674}, {"::1", 5673}, {"fe80::1", 5675}}));
  // broker.port applies wherever it is written.
  c = parse_ok("broker:\n  hosts: [a]\n  port: 5680\n");
  EXPECT_EQ(c->broker.hosts[0].port, 5680);

  auto errors = errors_of(
      "broker:\n  hosts:\n    - a:0\n    - a:x\n    - a:70000\n    - \":5672\"\n    - a:b:c\n"
      "    - \"[::1\"\n    - \"\"\n    - [a]\n    - \"a:\"\n");
  EXPECT_EQ(errors,
            (std::vector<std::string>{
                "warren.yml:3: broker.hosts[0]: bad port \"0\" in host \"a:0\": expected 1-65535",
                "warren.yml:4: broker.hosts[1]: bad port \"x\" in host \"a:x\": expected 1-65535",
                "warren.yml:5: broker.hosts[2]: bad port \"70000\" in host \"a:70000\": "
                "expected 1-65535",
                "warren.yml:6: broker.hosts[3]: bad host \":5672\": expected \"host\" or "
                "\"host:port\"",
                "warren.yml:7: broker.hosts[4]: bad host \"a:b:c\": write an IPv6 address as "
                "[addr] or [addr]:port",
                "warren.yml:8: broker.hosts[5]: bad host \"[::1\": write an IPv6 address as "
                "[addr] or [addr]:port",
                "warren.yml:9: broker.hosts[6]: bad host \"\": expected \"host\" or "
                "\"host:port\"",
                "warren.yml:10: broker.hosts[7]: expected a string, got a list",
                "warren.yml:11: broker.hosts[8]: bad port \"\" in host \"a:\": expected 1-65535",
            }));
  EXPECT_EQ(only_error("broker:\n  hosts: []\n"),
            "warren.yml:2: broker.hosts: needs at least one host");
}

TEST(Config, SemanticRanges) {
  EXPECT_EQ(errors_of("http:\n  ports:\n    - 8000\n    - 0\n    - 70000\n"),
            (std::vector<std::string>{
                "warren.yml:4: http.ports[1]: must be between 1 and 65535, got 0",
                "warren.yml:5: http.ports[2]: must be between 1 and 65535, got 70000"}));
  EXPECT_EQ(only_error("http:\n  ports: [8000, 8001, 8000]\n"),
            "warren.yml:2: http.ports[2]: port 8000 is listed twice");
  EXPECT_EQ(only_error("broker:\n  port: 0\n"),
            "warren.yml:2: broker.port: must be between 1 and 65535, got 0");
  EXPECT_EQ(only_error("http:\n  workers_per_port: 0\n"),
            "warren.yml:2: http.workers_per_port: must be between 1 and 1024, got 0");
  EXPECT_EQ(only_error("http:\n  max_body: 0\n"),
            "warren.yml:2: http.max_body: must be at least 1, got 0");
  EXPECT_EQ(only_error("daemon:\n  shutdown_timeout: -0.5\n"),
            "warren.yml:2: daemon.shutdown_timeout: must be between 0 and 10000000, got -0.5");
  EXPECT_EQ(only_error("broker:\n  heartbeat: 65536\n"),
            "warren.yml:2: broker.heartbeat: must be between 0 and 65535, got 65536");
  EXPECT_EQ(
      only_error("logging:\n  level: verbose\n"),
      "warren.yml:2: logging.level: must be one of debug, info, warning, error, got \"verbose\"");
  EXPECT_EQ(
      only_error("logging:\n  syslog_facility: mail\n"),
      "warren.yml:2: logging.syslog_facility: must be one of \"\", daemon, user, local0, local1, "
      "local2, local3, local4, local5, local6, local7, got \"mail\"");
  EXPECT_EQ(only_error("http:\n  listen: \"\"\n"), "warren.yml:2: http.listen: may not be empty");
  EXPECT_EQ(only_error("broker:\n  max_connections: 0\n"),
            "warren.yml:2: broker.max_connections: must be between 1 and 65535, got 0");
  EXPECT_EQ(only_error("http:\n  max_header_size: 100\n"),
            "warren.yml:2: http.max_header_size: must be between 256 and 16777216, got 100");
  EXPECT_EQ(only_error("http:\n  request_timeout: 0\n"),
            "warren.yml:2: http.request_timeout: must be between 0.001 and 10000000, got 0");
}

TEST(RpcConfig, MaxTimeoutDefaultAndCheck) {
  auto ok = config_parse("rpc:\n  timeout: 5\n", "warren.yml");
  ASSERT_TRUE(ok.config);
  EXPECT_EQ(ok.config->rpc.max_timeout, 600);
  auto bad = config_parse("rpc:\n  timeout: 50\n  max_timeout: 10\n", "warren.yml");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_EQ(bad.errors[0].text(), "warren.yml:3: rpc.max_timeout: must be at least rpc.timeout (50)");
}

TEST(HttpConfig, BodyBufferHoldsAtLeastOneBody) {
  auto ok = config_parse("http:\n  max_body: 2048\n", "warren.yml");
  ASSERT_TRUE(ok.config);
  EXPECT_EQ(ok.config->http.max_body_buffer, size_t{64} << 20);
  auto bad = config_parse("http:\n  max_body: 2048\n  max_body_buffer: 1024\n", "warren.yml");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_EQ(bad.errors[0].text(), "warren.yml:3: http.max_body_buffer: must be at least http.max_body (2048)");
  auto raised = config_parse("http:\n  max_body: 134217728\n", "warren.yml");
  ASSERT_EQ(raised.errors.size(), 1u);
  EXPECT_EQ(raised.errors[0].text(),
            "warren.yml:2: http.max_body: is over http.max_body_buffer (67108864): raise that too");
}

TEST(Config, BrokerTlsFiles) {
  char dir[] = "/tmp/warren-config-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string ca = std::string(dir) + "/ca.pem";
  std::ofstream(ca) << "x\n";
  auto errors = errors_of(fmt::format(
      "broker:\n  tls:\n    enabled: true\n    ca: {}\n    cert: {}/missing.pem\n", ca, dir));
  EXPECT_EQ(errors,
            (std::vector<std::string>{
                fmt::format("warren.yml:5: broker.tls.cert: cannot read \"{}/missing.pem\": No "
                            "such file or directory",
                            dir),
                "warren.yml:5: broker.tls.key: is required with broker.tls.cert"}));
  EXPECT_EQ(only_error("broker:\n  tls:\n    key: /k.pem\n"),
            "warren.yml:3: broker.tls.cert: is required with broker.tls.key");
  auto c = parse_ok(fmt::format("broker:\n  tls:\n    enabled: true\n    ca: {}\n", ca));
  EXPECT_TRUE(c->broker.tls.enabled);
  EXPECT_EQ(c->broker.tls.ca, ca);
  unlink(ca.c_str());
  rmdir(dir);
}

const char* kForwarderOk = "    queue: q\n    backend: {url: \"http://127.0.0.1:9000/\"}\n";

// forwarders[].format is read once, into an enum: every value that is not one of the choices,
// whatever its shape, is refused with the key and its line, as the string check did.
TEST(Config, FormatIsReadIntoAnEnum) {
  const std::string head = std::string("forwarders:\n  - name: a\n") + kForwarderOk;
  for (auto [text, format] : {std::pair{"raw", ForwarderFormat::raw}, std::pair{"vcd", ForwarderFormat::vcd},
                              std::pair{"\"oslo\"", ForwarderFormat::oslo}}) {
    auto result = config_parse(head + "    format: " + text + "\n    vcd: {extension: e}\n    oslo: {topic: t}\n",
                               "warren.yml");
    ASSERT_TRUE(result.config) << text;
    EXPECT_EQ(result.config->forwarders[0].format, format) << text;
  }
  EXPECT_EQ(config_parse(head, "warren.yml").config->forwarders[0].format, ForwarderFormat::raw);
  for (auto [text, error] : {std::pair{"Raw", "must be one of raw, vcd, oslo, got \"Raw\""},
                             std::pair{"\"oslo \"", "must be one of raw, vcd, oslo, got \"oslo \""},
                             std::pair{"", "must be one of raw, vcd, oslo, got \"\""},
                             std::pair{"[raw]", "expected a string, got a list"},
                             std::pair{"{a: 1}", "expected a string, got a mapping"}})
    EXPECT_EQ(only_error(head + "    format: " + text + "\n"), std::string("warren.yml:5: forwarders[0].format: ") + error)
        << text;
  // A bad format is no format at all, not oslo: the queue is still required.
  EXPECT_EQ(errors_of("forwarders:\n  - name: a\n    backend: {url: \"http://h/\"}\n    format: osl\n"),
            (std::vector<std::string>{"warren.yml:2: forwarders[0].queue: is required",
                                      "warren.yml:4: forwarders[0].format: must be one of raw, vcd, oslo, got \"osl\""}));
}

TEST(Config, ForwarderChecks) {
  EXPECT_EQ(errors_of("forwarders:\n  - format: raw\n"),
            (std::vector<std::string>{"warren.yml:2: forwarders[0].name: is required",
                                      "warren.yml:2: forwarders[0].backend.url: is required",
                                      "warren.yml:2: forwarders[0].queue: is required"}));
  EXPECT_EQ(only_error(std::string("forwarders:\n  - name: a\n") + kForwarderOk + "  - name: a\n" +
                       kForwarderOk),
            "warren.yml:5: forwarders[1].name: \"a\" is also the name of forwarders[0]");
  EXPECT_EQ(
      only_error(std::string("forwarders:\n  - name: a\n") + kForwarderOk + "    format: xml\n"),
      "warren.yml:5: forwarders[0].format: must be one of raw, vcd, oslo, got \"xml\"");
  EXPECT_EQ(
      only_error("forwarders:\n  - name: a\n    backend: {url: \"http://h/\"}\n    format: oslo\n"),
      "warren.yml:2: forwarders[0].oslo.topic: is required with format oslo");
  EXPECT_EQ(
      only_error(std::string("forwarders:\n  - name: a\n") + kForwarderOk + "    format: vcd\n"),
      "warren.yml:2: forwarders[0].vcd.extension: is required with format vcd");
  EXPECT_EQ(
      only_error("forwarders:\n  - name: a\n    queue: q\n    backend: {url: \"ftp://h/\"}\n"),
      "warren.yml:4: forwarders[0].backend.url: must start with http:// or https://, got "
      "\"ftp://h/\"");
  EXPECT_EQ(
      only_error(std::string("forwarders:\n  - name: a\n") + kForwarderOk + "    prefetch: 0\n"),
      "warren.yml:5: forwarders[0].prefetch: must be between 1 and 65535, got 0");
  EXPECT_EQ(only_error(std::string("forwarders:\n  - name: a\n") + kForwarderOk +
                       "    prefetch: 65536\n"),
            "warren.yml:5: forwarders[0].prefetch: must be between 1 and 65535, got 65536");
  EXPECT_EQ(
      errors_of(std::string("forwarders:\n  - name: a\n") + kForwarderOk +
                "    retry:\n      max_attempts: 0\n      initial_delay: 10\n      max_delay: 5\n"),
      (std::vector<std::string>{
          "warren.yml:6: forwarders[0].retry.max_attempts: must be between 1 and 1000, got 0",
          "warren.yml:8: forwarders[0].retry.max_delay: must be at least retry.initial_delay "
          "(10)"}));
  auto bad_regex = only_error(std::string("forwarders:\n  - name: a\n") + kForwarderOk +
                              "    rewrite: {from: \"^/api/(\"}\n");
  expect_contains(bad_regex,
                  "warren.yml:5: forwarders[0].rewrite.from: bad regular expression \"^/api/(\": ");
  EXPECT_EQ(
      errors_of("forwarders:\n  - name: a\n    queue: q\n"
                "    backend: {url: \"https://h/\", cert: /nonexistent.pem}\n"),
      (std::vector<std::string>{
          "warren.yml:4: forwarders[0].backend.cert: cannot read \"/nonexistent.pem\": No such "
          "file or directory",
          "warren.yml:4: forwarders[0].backend.key: is required with forwarders[0].backend.cert"}));
  EXPECT_EQ(
      only_error(std::string("forwarders:\n  - name: a\n") + kForwarderOk +
                 "    declare:\n      bindings: [k]\n"),
      "warren.yml:6: forwarders[0].declare.bindings: needs declare.exchange.name (the exchange "
      "to bind the queue to)");
  auto c = parse_ok(std::string("forwarders:\n  - name: a\n") + kForwarderOk + "    declare: {}\n");
  EXPECT_TRUE(c->forwarders[0].declare.enabled);
  EXPECT_EQ(parse_ok("forwarders: []\n")->forwarders.size(), 0u);
  EXPECT_EQ(parse_ok("forwarders:\n")->forwarders.size(), 0u);
}

TEST(Config, EveryErrorIsReported) {
  auto errors = errors_of(
      "daemon:\n"                  // 1
      "  shutdown_timeout: -1\n"   // 2
      "  usr: warren\n"            // 3
      "broker:\n"                  // 4
      "  hosts: [\"a:0\", b]\n"    // 5
      "  heartbeat: often\n"       // 6
      "http:\n"                    // 7
      "  ports: [eight, 99999]\n"  // 8
      "forwarders:\n"              // 9
      "  - name: f\n"              // 10
      "    prefetch: 0\n"          // 11
      "logging:\n"                 // 12
      "  level: loud\n");          // 13
  EXPECT_EQ(errors,
            (std::vector<std::string>{
                "warren.yml:2: daemon.shutdown_timeout: must be between 0 and 10000000, got -1",
                "warren.yml:3: daemon.usr: unknown key",
                "warren.yml:5: broker.hosts[0]: bad port \"0\" in host \"a:0\": expected 1-65535",
                "warren.yml:6: broker.heartbeat: expected an integer, got \"often\"",
                "warren.yml:8: http.ports[0]: expected an integer, got \"eight\"",
                "warren.yml:8: http.ports[0]: must be between 1 and 65535, got 99999",
                "warren.yml:10: forwarders[0].backend.url: is required",
                "warren.yml:10: forwarders[0].queue: is required",
                "warren.yml:11: forwarders[0].prefetch: must be between 1 and 65535, got 0",
                "warren.yml:13: logging.level: must be one of debug, info, warning, error, got "
                "\"loud\"",
            }));
}

TEST(Config, LoadFile) {
  auto missing = config_load("/nonexistent/warren.yml");
  ASSERT_EQ(missing.errors.size(), 1u);
  EXPECT_EQ(missing.errors[0].text(),
            "/nonexistent/warren.yml: cannot read: No such file or directory");
  EXPECT_EQ(missing.config, nullptr);
}

TEST(Config, SampleFileLoads) {
  auto result = config_load("etc/warren.yml");
  for (const auto& e : result.errors) ADD_FAILURE() << e.text();
  ASSERT_NE(result.config, nullptr);
  const auto& c = *result.config;
  EXPECT_EQ(c.path, "etc/warren.yml");
  EXPECT_EQ(c.broker.hosts, (std::vector<BrokerHost>{{"127.0.0.1", 5672}}));
  EXPECT_EQ(c.broker.username, "guest");
  EXPECT_EQ(c.broker.password, "guest");
  EXPECT_EQ(c.http.ports, (std::vector<int>{8000, 8001}));
  EXPECT_EQ(c.daemon.pidfile, "/run/warren/warrend.pid");
  EXPECT_EQ(c.daemon.control_socket, "/run/warren/warrend.sock");
  EXPECT_EQ(c.daemon.user, "warren");
  EXPECT_EQ(c.daemon.group, "warren");
  EXPECT_TRUE(c.forwarders.empty());
}

// The commented-out forwarder example in etc/warren.yml is valid once uncommented.
TEST(Config, SampleForwarderExampleLoads) {
  std::ifstream in("etc/warren.yml");
  ASSERT_TRUE(in);
  std::string text, line;
  while (std::getline(in, line)) {
    if (line == "forwarders: []") continue;
    if (line.starts_with("#forwarders:") || line.starts_with("#  ")) line.erase(0, 1);
    text += line + "\n";
  }
  auto c = parse_ok(text);
  ASSERT_EQ(c->forwarders.size(), 1u);
  EXPECT_EQ(c->forwarders[0].name, "example1");
  EXPECT_EQ(c->forwarders[0].declare.queue_arguments.at("x-queue-type").text, "quorum");
  EXPECT_EQ(c->forwarders[0].backend.url, "http://127.0.0.1:9000/api");
}

TEST(Config, RestartKeys) {
  auto a = parse_ok("http:\n  ports: [8000]\n");
  EXPECT_TRUE(config_restart_keys(*a, *a).empty());
  auto b = parse_ok(
      "daemon:\n  pidfile: /tmp/x.pid\n  shutdown_timeout: 1\nhttp:\n  listen: 0.0.0.0\n"
      "  ports: [8000, 8001]\n  workers_per_port: 2\nlogging:\n  level: debug\n"
      "forwarders:\n  - name: f\n    queue: q\n    backend: {url: http://h/}\n");
  EXPECT_EQ(config_restart_keys(*a, *b),
            (std::vector<std::string>{"daemon.pidfile", "http.listen"}));
  auto c = parse_ok("daemon:\n  user: u\n  group: g\n  control_socket: /tmp/s\n");
  EXPECT_EQ(config_restart_keys(*a, *c),
            (std::vector<std::string>{"daemon.user", "daemon.group", "daemon.control_socket"}));
}

TEST(Config, KeyTableHasEveryDesignKey) {
  // The keys of design.md's "Config" section: a contract.
  const std::vector<std::string> design = {"daemon.pidfile",
                                           "daemon.user",
                                           "daemon.group",
                                           "daemon.control_socket",
                                           "daemon.shutdown_timeout",
                                           "broker.hosts",
                                           "broker.port",
                                           "broker.vhost",
                                           "broker.username",
                                           "broker.password",
                                           "broker.heartbeat",
                                           "broker.connect_timeout",
                                           "broker.tls.enabled",
                                           "broker.tls.ca",
                                           "broker.tls.cert",
                                           "broker.tls.key",
                                           "broker.tls.verify",
                                           "http.listen",
                                           "http.ports",
                                           "http.workers_per_port",
                                           "http.max_body",
                                           "http.confirm_timeout",
                                           "http.idle_connection_timeout",
                                           "http.keep_alive",
                                           "forwarders[].name",
                                           "forwarders[].queue_set",
                                           "forwarders[].vhost",
                                           "forwarders[].queue",
                                           "forwarders[].declare.exchange.name",
                                           "forwarders[].declare.exchange.type",
                                           "forwarders[].declare.exchange.durable",
                                           "forwarders[].declare.queue.durable",
                                           "forwarders[].declare.queue.arguments",
                                           "forwarders[].declare.bindings",
                                           "forwarders[].format",
                                           "forwarders[].backend.url",
                                           "forwarders[].backend.username",
                                           "forwarders[].backend.password",
                                           "forwarders[].backend.ca",
                                           "forwarders[].backend.cert",
                                           "forwarders[].backend.key",
                                           "forwarders[].backend.verify",
                                           "forwarders[].backend.timeout",
                                           "forwarders[].rewrite.from",
                                           "forwarders[].rewrite.to",
                                           "forwarders[].prefetch",
                                           "forwarders[].retry.max_attempts",
                                           "forwarders[].retry.initial_delay",
                                           "forwarders[].retry.max_delay",
                                           "forwarders[].dead_letter_exchange",
                                           "forwarders[].vcd.extension",
                                           "forwarders[].vcd.required_rights",
                                           "forwarders[].vcd.allowed_orgs",
                                           "forwarders[].oslo.exchange",
                                           "forwarders[].oslo.topic",
                                           "forwarders[].oslo.server",
                                           "rpc.timeout",
                                           "logging.level",
                                           "logging.syslog_facility"};
  auto table = config_key_table();
  std::set<std::string> keys;
  for (const auto& row : table) {
    EXPECT_TRUE(keys.insert(row.key).second) << "twice: " << row.key;
    EXPECT_FALSE(row.type.empty()) << row.key;
    EXPECT_FALSE(row.default_value.empty()) << row.key;
  }
  // design.md's keys are a contract: all present. Keys may be added, never renamed.
  for (const auto& key : design) EXPECT_TRUE(keys.count(key)) << "missing: " << key;

  auto find = [&](const std::string& key) {
    return *std::find_if(table.begin(), table.end(), [&](const auto& r) { return r.key == key; });
  };
  EXPECT_EQ(find("http.ports").default_value, "[8000]");
  EXPECT_EQ(find("http.ports").type, "list of integers");
  EXPECT_TRUE(find("http.ports").reloadable);
  EXPECT_FALSE(find("http.listen").reloadable);
  EXPECT_EQ(find("broker.hosts").default_value, "[127.0.0.1]");
  EXPECT_EQ(find("daemon.shutdown_timeout").default_value, "10");
  EXPECT_EQ(find("daemon.shutdown_timeout").type, "duration (seconds)");
  EXPECT_EQ(find("http.max_body").type, "size (bytes)");
  EXPECT_EQ(find("http.keep_alive").default_value, "true");
  EXPECT_EQ(find("http.ports").allowed, "1 to 65535");
  EXPECT_EQ(find("http.max_body").allowed, "at least 1");
  EXPECT_EQ(find("forwarders[].format").allowed, "raw|vcd|oslo");
  EXPECT_EQ(find("broker.vhost").allowed, "");
  EXPECT_EQ(find("forwarders[].name").default_value, "(required)");
  EXPECT_EQ(find("logging.syslog_facility").default_value, "\"\"");
  int restart = 0;
  for (const auto& row : table) restart += row.reloadable ? 0 : 1;
  EXPECT_EQ(restart, 5);
}

}  // namespace
}  // namespace warren
