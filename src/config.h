// The configuration: YAML (etc/warren.yml) parsed into an immutable Config. The keys are a
// contract (design.md, man/warren.yml.5); every key is one row of the table in config.cc.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "amqp/types.h"
#include "core/forwarding.h"

namespace warren {

// The layers' own option types, read from the file as they are.
using amqp::BrokerHost;
using amqp::TlsConfig;
using RetryConfig = core::RetryPolicy;

struct DaemonConfig {
  std::string pidfile = "/run/warren/warrend.pid";
  std::string user = "warren";
  std::string group = "warren";
  std::string control_socket = "/run/warren/warrend.sock";
  double shutdown_timeout = 10;
};

struct BrokerConfig {
  std::vector<BrokerHost> hosts;  // "host" or "host:port"; a host without a port takes `port`
  int port = 5672;
  std::string vhost = "/";
  std::string username = "guest";
  std::string password = "guest";
  int heartbeat = 30;
  double connect_timeout = 5;
  TlsConfig tls;
  int max_connections = 64;  // publishing connections (one per vhost, user, password) per worker
  size_t max_output_buffer = 16 << 20;  // bytes unsent on a publishing connection; more: 503
};

// The cores this process may run on (its CPU affinity, so a cpuset or taskset counts): what
// `auto` means for http.workers_per_port.
int usable_cores();

struct HttpConfig {
  std::string listen = "127.0.0.1";
  std::vector<int> ports{8000};
  int workers_per_port = usable_cores();  // `auto`
  size_t max_body = 1048576;
  size_t max_body_buffer = 64 << 20;  // bytes of bodies being read, all of a worker's clients
  size_t max_output_buffer = 64 << 20;  // bytes of answers not taken, all of a worker's clients
  size_t max_connections = 4096;  // client connections per worker; more wait in the listen backlog
  double confirm_timeout = 5;
  double idle_connection_timeout = 300;
  bool keep_alive = true;
  int max_in_flight = 10000;  // publishes waiting or unconfirmed per broker connection
  double sse_keepalive = 15;        // seconds between comment lines on an idle event stream
  size_t sse_max_buffer = 1048576;  // bytes unsent to an event client before it is cut off
  size_t max_header_size = 16384;   // request line and headers; more answers 431
  double request_timeout = 30;      // seconds from a request's first byte to its last; then 408
  int max_event_streams = 256;      // open /events streams per worker (a broker connection each)
};

// A YAML scalar or nested value kept as written, for queue `arguments` (typed on the wire).
struct ArgValue {
  enum class Kind { string, integer, real, boolean } kind = Kind::string;
  std::string text;
  long long integer = 0;
  double real = 0;
  bool boolean = false;
  bool operator==(const ArgValue&) const = default;
};

struct DeclareConfig {
  bool enabled = false;  // a `declare:` block was given
  std::string exchange_name, exchange_type = "direct";
  bool exchange_durable = true;
  bool queue_durable = true;
  std::map<std::string, ArgValue> queue_arguments;
  std::vector<std::string> bindings;
};

struct BackendConfig {
  std::string url;
  std::string username, password;
  std::string ca, cert, key;
  bool verify = true;
  double timeout = 30;
  bool operator==(const BackendConfig&) const = default;
};

// vCloud Director's own API, for the checks it alone can answer (rights by name, a user's
// organizations) and for registering the extension (forward/vcd_api.h).
struct VcdApiConfig {
  std::string url;  // "https://vcd.example.com"; "" : no API
  std::string username, password;  // a System administrator ("name", or "name@System")
  std::string api_version = "33.0";
  bool verify = true;
  std::string ca;
  double cache_ttl = 300;  // seconds a right's id is remembered
  double timeout = 10;     // seconds per API request
};

struct VcdConfig {
  std::string extension;
  std::vector<std::string> required_rights;  // URNs, or names resolved through `api`
  std::vector<std::string> allowed_orgs;
  bool forward_rights = false;  // the context's rights to the backend as header user_rights
  VcdApiConfig api;
  bool check_org_membership = false;  // the user's own token must list the context's org
  std::string deploy = "manual";      // manual | auto: register the extension at start
};

struct OsloConfig {
  std::string exchange = "openstack";
  std::string topic;
  std::string server;
};

// How a forwarder maps messages and HTTP (forward/format.h). Declared in the order of
// forwarders[].format's choices in config.cc's key table: the loader maps a choice to its position.
enum class ForwarderFormat { raw, vcd, oslo };

struct ForwarderConfig {
  std::string name;
  std::string queue_set = "default";
  std::string vhost = "/";
  std::string queue;
  DeclareConfig declare;
  ForwarderFormat format = ForwarderFormat::raw;
  BackendConfig backend;
  std::string rewrite_from, rewrite_to;
  size_t max_path = 8192;       // x-http-path, a vCD requestUri or queryString, an oslo method
  size_t max_body = 16 << 20;   // a vcd or oslo body warren parses as JSON
  int prefetch = 64;
  RetryConfig retry;
  std::string dead_letter_exchange;
  VcdConfig vcd;
  OsloConfig oslo;
};

struct RpcConfig {
  double timeout = 60;
  double max_timeout = 600;  // a call's whole wait, heartbeats included; the largest ?timeout
  int max_pending_calls = 1024;  // calls waiting for their reply per worker
};

struct LoggingConfig {
  std::string level = "info";
  std::string syslog_facility;
};

struct Config {
  std::string path;  // the file it was read from
  DaemonConfig daemon;
  BrokerConfig broker;
  HttpConfig http;
  std::vector<ForwarderConfig> forwarders;
  RpcConfig rpc;
  LoggingConfig logging;
};

// One problem found in a file: "file:line: key: problem" (line 0 and an empty key left out).
struct ConfigError {
  std::string file;
  int line = 0;
  std::string key;  // dotted path, e.g. "http.ports[1]" or "forwarders[0].backend.url"
  std::string problem;
  std::string text() const;
};

struct ConfigResult {
  std::shared_ptr<const Config> config;  // set when errors is empty
  std::vector<ConfigError> errors;
};

// Reads and checks a file: YAML syntax, structure and types, unknown keys, then the semantic
// checks (ports in range, formats known, ...). Every problem is reported, not just the first.
[[nodiscard]] ConfigResult config_load(const std::string& path);
[[nodiscard]] ConfigResult config_parse(const std::string& text, const std::string& name);

// Keys a reload may not change (they are bound or opened by the master before the fork).
// Returns the dotted key names that differ between the two configs and need a restart.
std::vector<std::string> config_restart_keys(const Config& old_config, const Config& new_config);

// The documented key table, for the docs check: every dotted key name with its type and default.
struct ConfigKeyDoc {
  std::string key, type, default_value;
  bool reloadable;
  std::string allowed;  // the values the semantic check accepts: "1 to 65535", "raw|vcd|oslo", ""
};
std::vector<ConfigKeyDoc> config_key_table();

}  // namespace warren
