// The configuration: YAML text -> a small tree with line numbers (yaml_tree.h) -> Config,
// driven by one table with a row per key. Three phases, each reporting every problem it finds:
// parse (YAML syntax), structure and types (unknown keys, wrong types), semantics (ranges,
// choices, cross-key rules). The table also gives the docs and the keys a reload may not change.
#include "config.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <string_view>
#include <variant>

#include "forward/backend_url.h"
#include "forward/rewrite.h"
#include "yaml_tree.h"

namespace warren {

std::string ConfigError::text() const {
  std::string out = file;
  if (line > 0) out += fmt::format(":{}", line);
  out += ": ";
  if (!key.empty()) out += key + ": ";
  return out + problem;
}

namespace {

// ---------------------------------------------------------------- the key table

// Rows reach their member through a capture-less accessor: global keys through config,
// forwarders[] keys through the forwarder being read.
struct Target {
  Config* config;
  ForwarderConfig* forwarder;
};
template <typename T>
using Ref = T& (*)(Target);
using Field = std::variant<Ref<bool>, Ref<int>, Ref<size_t>, Ref<double>, Ref<std::string>,
                           Ref<std::vector<int>>, Ref<std::vector<std::string>>,
                           Ref<std::vector<BrokerHost>>, Ref<std::map<std::string, ArgValue>>,
                           Ref<ForwarderFormat>>;

// clang-format off
#define CONFIG_KEY(member) +[](Target t) -> auto& { return t.config->member; }
#define FORWARDER_KEY(member) +[](Target t) -> auto& { return t.forwarder->member; }
// clang-format on

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kMaxSeconds = 1e7;  // ~115 days: keeps every duration convertible to a timeval
constexpr std::string_view kForwarders = "forwarders";          // the one list of sections
constexpr std::string_view kForwarderPrefix = "forwarders[].";  // its rows' keys

struct KeyRow {
  std::string_view key;  // dotted path; list entries as "forwarders[].backend.url"
  Field field;
  bool reloadable = true;              // false: bound or opened by the master before the fork
  double min = -kInf, max = kInf;      // numbers, and each element of a list of numbers
  std::string_view choices = {};       // "a|b|c": the value must be one of them ("" may be one);
                                       // an enum member takes the position of its choice
  bool required = false;               // a string that may not be empty
  std::string_view default_text = {};  // for the docs, when the member's initial value is not it
};

// THE KEY TABLE. Format contract (t/checks/config-docs greps it): between the BEGIN and END
// marker lines, every row starts its own line with `{.key = "<dotted key>"`, and no other line
// there does. Keep one row per key, in the order of etc/warren.yml.
// BEGIN KEY TABLE
// clang-format off
const KeyRow kKeyTable[] = {
    {.key = "daemon.pidfile", .field = CONFIG_KEY(daemon.pidfile), .reloadable = false},
    {.key = "daemon.user", .field = CONFIG_KEY(daemon.user), .reloadable = false},
    {.key = "daemon.group", .field = CONFIG_KEY(daemon.group), .reloadable = false},
    {.key = "daemon.control_socket", .field = CONFIG_KEY(daemon.control_socket),
     .reloadable = false, .required = true},
    {.key = "daemon.shutdown_timeout", .field = CONFIG_KEY(daemon.shutdown_timeout), .min = 0,
     .max = kMaxSeconds},

    {.key = "broker.hosts", .field = CONFIG_KEY(broker.hosts), .default_text = "[127.0.0.1]"},
    {.key = "broker.port", .field = CONFIG_KEY(broker.port), .min = 1, .max = 65535},
    {.key = "broker.vhost", .field = CONFIG_KEY(broker.vhost), .required = true},
    {.key = "broker.username", .field = CONFIG_KEY(broker.username)},
    {.key = "broker.password", .field = CONFIG_KEY(broker.password)},
    {.key = "broker.heartbeat", .field = CONFIG_KEY(broker.heartbeat), .min = 0, .max = 65535},
    {.key = "broker.connect_timeout", .field = CONFIG_KEY(broker.connect_timeout), .min = 0,
     .max = kMaxSeconds},
    {.key = "broker.tls.enabled", .field = CONFIG_KEY(broker.tls.enabled)},
    {.key = "broker.tls.ca", .field = CONFIG_KEY(broker.tls.ca)},
    {.key = "broker.tls.cert", .field = CONFIG_KEY(broker.tls.cert)},
    {.key = "broker.tls.key", .field = CONFIG_KEY(broker.tls.key)},
    {.key = "broker.tls.verify", .field = CONFIG_KEY(broker.tls.verify)},
    {.key = "broker.max_connections", .field = CONFIG_KEY(broker.max_connections), .min = 1,
     .max = 65535},
    {.key = "broker.max_output_buffer", .field = CONFIG_KEY(broker.max_output_buffer), .min = 1},

    {.key = "http.listen", .field = CONFIG_KEY(http.listen), .reloadable = false,
     .required = true},
    {.key = "http.ports", .field = CONFIG_KEY(http.ports), .min = 1, .max = 65535},
    {.key = "http.workers_per_port", .field = CONFIG_KEY(http.workers_per_port), .min = 1,
     .max = 1024},
    {.key = "http.max_body", .field = CONFIG_KEY(http.max_body), .min = 1},
    {.key = "http.confirm_timeout", .field = CONFIG_KEY(http.confirm_timeout), .min = 0,
     .max = kMaxSeconds},
    {.key = "http.idle_connection_timeout", .field = CONFIG_KEY(http.idle_connection_timeout),
     .min = 0, .max = kMaxSeconds},
    {.key = "http.keep_alive", .field = CONFIG_KEY(http.keep_alive)},
    {.key = "http.max_in_flight", .field = CONFIG_KEY(http.max_in_flight), .min = 1},
    {.key = "http.sse_keepalive", .field = CONFIG_KEY(http.sse_keepalive), .min = 0.01,
     .max = kMaxSeconds},
    {.key = "http.sse_max_buffer", .field = CONFIG_KEY(http.sse_max_buffer), .min = 1},
    {.key = "http.max_header_size", .field = CONFIG_KEY(http.max_header_size), .min = 256,
     .max = 16 * 1024 * 1024},
    {.key = "http.request_timeout", .field = CONFIG_KEY(http.request_timeout), .min = 0.001,
     .max = kMaxSeconds},
    {.key = "http.max_event_streams", .field = CONFIG_KEY(http.max_event_streams), .min = 0,
     .max = 65535},

    {.key = "forwarders[].name", .field = FORWARDER_KEY(name), .required = true},
    {.key = "forwarders[].queue_set", .field = FORWARDER_KEY(queue_set), .required = true},
    {.key = "forwarders[].vhost", .field = FORWARDER_KEY(vhost), .required = true},
    {.key = "forwarders[].queue", .field = FORWARDER_KEY(queue)},
    {.key = "forwarders[].declare.exchange.name", .field = FORWARDER_KEY(declare.exchange_name)},
    {.key = "forwarders[].declare.exchange.type", .field = FORWARDER_KEY(declare.exchange_type),
     .required = true},
    {.key = "forwarders[].declare.exchange.durable",
     .field = FORWARDER_KEY(declare.exchange_durable)},
    {.key = "forwarders[].declare.queue.durable", .field = FORWARDER_KEY(declare.queue_durable)},
    {.key = "forwarders[].declare.queue.arguments",
     .field = FORWARDER_KEY(declare.queue_arguments)},
    {.key = "forwarders[].declare.bindings", .field = FORWARDER_KEY(declare.bindings)},
    {.key = "forwarders[].format", .field = FORWARDER_KEY(format), .choices = "raw|vcd|oslo"},
    {.key = "forwarders[].backend.url", .field = FORWARDER_KEY(backend.url), .required = true},
    {.key = "forwarders[].backend.username", .field = FORWARDER_KEY(backend.username)},
    {.key = "forwarders[].backend.password", .field = FORWARDER_KEY(backend.password)},
    {.key = "forwarders[].backend.ca", .field = FORWARDER_KEY(backend.ca)},
    {.key = "forwarders[].backend.cert", .field = FORWARDER_KEY(backend.cert)},
    {.key = "forwarders[].backend.key", .field = FORWARDER_KEY(backend.key)},
    {.key = "forwarders[].backend.verify", .field = FORWARDER_KEY(backend.verify)},
    {.key = "forwarders[].backend.timeout", .field = FORWARDER_KEY(backend.timeout), .min = 0,
     .max = kMaxSeconds},
    {.key = "forwarders[].rewrite.from", .field = FORWARDER_KEY(rewrite_from)},
    {.key = "forwarders[].rewrite.to", .field = FORWARDER_KEY(rewrite_to)},
    {.key = "forwarders[].max_path", .field = FORWARDER_KEY(max_path), .min = 1, .max = 1 << 20},
    {.key = "forwarders[].max_body", .field = FORWARDER_KEY(max_body), .min = 1, .max = 1 << 30},
    {.key = "forwarders[].prefetch", .field = FORWARDER_KEY(prefetch), .min = 1, .max = 65535},
    {.key = "forwarders[].retry.max_attempts", .field = FORWARDER_KEY(retry.max_attempts),
     .min = 1, .max = 1000},
    {.key = "forwarders[].retry.initial_delay", .field = FORWARDER_KEY(retry.initial_delay),
     .min = 0, .max = kMaxSeconds},
    {.key = "forwarders[].retry.max_delay", .field = FORWARDER_KEY(retry.max_delay), .min = 0,
     .max = kMaxSeconds},
    {.key = "forwarders[].dead_letter_exchange", .field = FORWARDER_KEY(dead_letter_exchange)},
    {.key = "forwarders[].vcd.extension", .field = FORWARDER_KEY(vcd.extension)},
    {.key = "forwarders[].vcd.required_rights", .field = FORWARDER_KEY(vcd.required_rights)},
    {.key = "forwarders[].vcd.allowed_orgs", .field = FORWARDER_KEY(vcd.allowed_orgs)},
    {.key = "forwarders[].oslo.exchange", .field = FORWARDER_KEY(oslo.exchange)},
    {.key = "forwarders[].oslo.topic", .field = FORWARDER_KEY(oslo.topic)},
    {.key = "forwarders[].oslo.server", .field = FORWARDER_KEY(oslo.server)},

    {.key = "rpc.timeout", .field = CONFIG_KEY(rpc.timeout), .min = 0, .max = kMaxSeconds},
    {.key = "rpc.max_timeout", .field = CONFIG_KEY(rpc.max_timeout), .min = 0, .max = kMaxSeconds},
    {.key = "rpc.max_pending_calls", .field = CONFIG_KEY(rpc.max_pending_calls), .min = 0,
     .max = 1000000},

    {.key = "logging.level", .field = CONFIG_KEY(logging.level),
     .choices = "debug|info|warning|error"},
    {.key = "logging.syslog_facility", .field = CONFIG_KEY(logging.syslog_facility),
     .choices = "|daemon|user|local0|local1|local2|local3|local4|local5|local6|local7"},
};
// clang-format on
// END KEY TABLE

#undef CONFIG_KEY
#undef FORWARDER_KEY

// A row's choices, "a|b|c", as a list.
std::vector<std::string_view> split_choices(std::string_view choices) {
  std::vector<std::string_view> list;
  for (;;) {
    size_t bar = choices.find('|');
    list.push_back(choices.substr(0, bar));
    if (bar == std::string_view::npos) return list;
    choices.remove_prefix(bar + 1);
  }
}

std::string not_a_choice(const std::vector<std::string_view>& choices, std::string_view value) {
  std::string list;
  for (auto choice : choices) {
    list += list.empty() ? "" : ", ";
    list += choice.empty() ? "\"\"" : std::string(choice);
  }
  return fmt::format("must be one of {}, got \"{}\"", list, value);
}

bool is_forwarder_row(const KeyRow& row) { return row.key.starts_with(kForwarderPrefix); }

const KeyRow* find_row(std::string_view key) {
  for (const auto& row : kKeyTable)
    if (row.key == key) return &row;
  return nullptr;
}

// A section is any proper prefix of a key: "broker", "broker.tls", "forwarders[].declare".
bool is_section(std::string_view key) {
  for (const auto& row : kKeyTable)
    if (row.key.size() > key.size() && row.key.starts_with(key) && row.key[key.size()] == '.')
      return true;
  return false;
}

std::string join_key(std::string_view prefix, std::string_view name) {
  return prefix.empty() ? std::string(name) : fmt::format("{}.{}", prefix, name);
}

// ---------------------------------------------------------------- scalar conversions

std::string describe(const YamlNode& n) {
  switch (n.kind) {
    case YamlNode::Kind::null:
      return "nothing";
    case YamlNode::Kind::sequence:
      return "a list";
    case YamlNode::Kind::mapping:
      return "a mapping";
    case YamlNode::Kind::scalar:
      break;
  }
  std::string v = n.value.size() > 40 ? n.value.substr(0, 40) + "..." : n.value;
  return fmt::format("{}\"{}\"", n.quoted ? "a quoted string " : "", v);
}

// Each returns the value or nullopt with `problem` set.
std::optional<bool> to_bool(const YamlNode& n, std::string& problem) {
  if (n.kind == YamlNode::Kind::scalar && !n.quoted) {
    std::string v = n.value;
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
    if (v == "true" || v == "yes") return true;
    if (v == "false" || v == "no") return false;
  }
  problem = "expected a boolean (true/false/yes/no), got " + describe(n);
  return std::nullopt;
}

std::string_view number_text(const YamlNode& n) {
  std::string_view v = n.value;
  if (v.starts_with('+')) v.remove_prefix(1);
  return v;
}

template <typename T>
std::optional<T> to_integer(const YamlNode& n, std::string& problem) {
  if (n.kind == YamlNode::Kind::scalar && !n.quoted) {
    std::string_view v = number_text(n);
    long long x = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (!v.empty() && end == v.data() + v.size()) {
      bool fits = ec == std::errc();
      if constexpr (std::is_unsigned_v<T>)
        fits =
            fits && x >= 0 && static_cast<unsigned long long>(x) <= std::numeric_limits<T>::max();
      else
        fits = fits && x >= std::numeric_limits<T>::min() && x <= std::numeric_limits<T>::max();
      if (fits) return static_cast<T>(x);
      if (ec == std::errc() || ec == std::errc::result_out_of_range) {
        problem = fmt::format("{} is out of range ({} to {})", n.value,
                              std::numeric_limits<T>::min(), std::numeric_limits<T>::max());
        return std::nullopt;
      }
    }
  }
  problem = "expected an integer, got " + describe(n);
  return std::nullopt;
}

std::optional<double> to_seconds(const YamlNode& n, std::string& problem) {
  if (n.kind == YamlNode::Kind::scalar && !n.quoted) {
    std::string_view v = number_text(n);
    double x = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (!v.empty() && ec == std::errc() && end == v.data() + v.size() && std::isfinite(x)) return x;
  }
  problem = "expected a number of seconds, got " + describe(n);
  return std::nullopt;
}

std::optional<std::string> to_string(const YamlNode& n, std::string& problem) {
  if (n.kind == YamlNode::Kind::null) return std::string();
  if (n.kind == YamlNode::Kind::scalar) return n.value;
  problem = "expected a string, got " + describe(n);
  return std::nullopt;
}

bool parse_port(std::string_view text, int& port) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size() && port >= 1 &&
         port <= 65535;
}

// "host", "host:port", "[v6addr]" or "[v6addr]:port". Port 0: not given, takes broker.port.
std::optional<BrokerHost> to_host(const YamlNode& n, std::string& problem) {
  auto text = to_string(n, problem);
  if (!text) return std::nullopt;
  std::string_view s = *text, host = s, port;
  bool has_port = false;
  if (s.starts_with('[')) {
    size_t close = s.find(']');
    if (close == std::string_view::npos || (close + 1 < s.size() && s[close + 1] != ':')) {
      problem = fmt::format("bad host \"{}\": write an IPv6 address as [addr] or [addr]:port", s);
      return std::nullopt;
    }
    host = s.substr(1, close - 1);
    has_port = close + 1 < s.size();
    if (has_port) port = s.substr(close + 2);
  } else if (size_t colon = s.find(':'); colon != std::string_view::npos) {
    if (s.find(':', colon + 1) != std::string_view::npos) {
      problem = fmt::format("bad host \"{}\": write an IPv6 address as [addr] or [addr]:port", s);
      return std::nullopt;
    }
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    has_port = true;
  }
  if (host.empty() || host.find_first_of(" \t/@") != std::string_view::npos) {
    problem = fmt::format("bad host \"{}\": expected \"host\" or \"host:port\"", s);
    return std::nullopt;
  }
  BrokerHost h{std::string(host), 0};
  if (has_port && !parse_port(port, h.port)) {
    problem = fmt::format("bad port \"{}\" in host \"{}\": expected 1-65535", port, s);
    return std::nullopt;
  }
  return h;
}

// Queue arguments keep their YAML type: plain scalars become booleans, integers or reals.
std::optional<ArgValue> to_arg(const YamlNode& n, std::string& problem) {
  if (n.kind != YamlNode::Kind::scalar) {
    problem = "expected a string, number or boolean, got " + describe(n);
    return std::nullopt;
  }
  ArgValue a;
  a.text = n.value;
  std::string ignored;
  if (n.quoted) {
    a.kind = ArgValue::Kind::string;
  } else if (auto b = to_bool(n, ignored)) {
    a.kind = ArgValue::Kind::boolean;
    a.boolean = *b;
  } else if (auto i = to_integer<long long>(n, ignored)) {
    a.kind = ArgValue::Kind::integer;
    a.integer = *i;
  } else if (auto r = to_seconds(n, ignored)) {
    a.kind = ArgValue::Kind::real;
    a.real = *r;
  }
  return a;
}

// ---------------------------------------------------------------- phases 2 and 3

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) { config_.path = file_; }

  void load(const YamlNode& root) {
    walk_mapping(root, "", "", Target{&config_, nullptr});
    resolve_hosts();
    check_semantics();
  }

  ConfigResult finish() && {
    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
    ConfigResult result;
    if (errors_.empty()) result.config = std::make_shared<const Config>(std::move(config_));
    result.errors = std::move(errors_);
    return result;
  }

 private:
  void error(int line, std::string key, std::string problem) {
    errors_.push_back({file_, line, std::move(key), std::move(problem)});
  }

  // A semantic problem: reported at the key's line, or its nearest given parent's.
  void error_at(const std::string& key, std::string problem) {
    error(line_of(key), key, std::move(problem));
  }

  // The line of a key, or of its nearest parent given in the file (a default has no line).
  int line_of(std::string key) const {
    while (!key.empty()) {
      if (auto it = lines_.find(key); it != lines_.end()) return it->second;
      size_t cut = key.find_last_of(".[");
      key.resize(cut == std::string::npos ? 0 : cut);
    }
    return 0;
  }

  // pattern: the table's name for this mapping ("forwarders[].backend"); path: the name the
  // user sees ("forwarders[2].backend").
  void walk_mapping(const YamlNode& node, const std::string& pattern, const std::string& path,
                    Target t) {
    if (node.kind == YamlNode::Kind::null) return;
    if (node.kind != YamlNode::Kind::mapping) {
      error(node.line, path, "expected a mapping, got " + describe(node));
      return;
    }
    std::set<std::string> seen;
    for (const auto& [k, v] : node.entries) {
      if (k.kind != YamlNode::Kind::scalar) {
        error(k.line, path, "expected a key name, got " + describe(k));
        continue;
      }
      std::string kp = join_key(pattern, k.value), kd = join_key(path, k.value);
      if (!seen.insert(k.value).second) {
        error(k.line, kd, "duplicate key");
        continue;
      }
      lines_[kd] = k.line;
      if (const KeyRow* row = find_row(kp)) {
        set_value(*row, v, kd, t);
      } else if (is_section(kp)) {
        // A declare: block, even an empty one, asks for the declarations.
        if (kp == "forwarders[].declare") t.forwarder->declare.enabled = true;
        walk_mapping(v, kp, kd, t);
      } else if (kp == kForwarders) {
        walk_forwarders(v, kd);
      } else {
        error(k.line, kd, "unknown key");
      }
    }
  }

  void walk_forwarders(const YamlNode& node, const std::string& path) {
    if (node.kind == YamlNode::Kind::null) return;
    if (node.kind != YamlNode::Kind::sequence) {
      error(node.line, path, "expected a list, got " + describe(node));
      return;
    }
    std::string pattern = fmt::format("{}[]", kForwarders);
    for (size_t i = 0; i < node.items.size(); ++i) {
      std::string item = fmt::format("{}[{}]", path, i);
      lines_[item] = node.items[i].line;
      config_.forwarders.emplace_back();
      if (node.items[i].kind != YamlNode::Kind::mapping) {
        error(node.items[i].line, item, "expected a mapping, got " + describe(node.items[i]));
        unchecked_forwarders_.insert(i);
        continue;
      }
      walk_mapping(node.items[i], pattern, item, Target{&config_, &config_.forwarders.back()});
    }
  }

  // Converts one scalar with `convert`, or reports it. Returns whether it succeeded.
  template <typename T, typename Convert>
  bool convert_into(const YamlNode& n, const std::string& path, T& out, Convert convert) {
    std::string problem;
    auto v = convert(n, problem);
    if (!v) {
      error(n.line, path, problem);
      return false;
    }
    out = std::move(*v);
    return true;
  }

  template <typename T, typename Convert>
  void convert_list(const YamlNode& n, const std::string& path, std::vector<T>& out,
                    Convert convert) {
    if (n.kind == YamlNode::Kind::null) {
      out.clear();
      return;
    }
    if (n.kind != YamlNode::Kind::sequence) {
      error(n.line, path, "expected a list, got " + describe(n));
      return;
    }
    out.clear();
    for (size_t i = 0; i < n.items.size(); ++i) {
      std::string item = fmt::format("{}[{}]", path, i);
      lines_[item] = n.items[i].line;
      T value{};
      if (convert_into(n.items[i], item, value, convert)) out.push_back(std::move(value));
    }
  }

  void set_value(const KeyRow& row, const YamlNode& n, const std::string& path, Target t) {
    if (n.kind == YamlNode::Kind::scalar) lines_[path] = n.line;
    std::visit(
        [&](auto ref) {
          auto& member = ref(t);
          using T = std::decay_t<decltype(member)>;
          if constexpr (std::is_same_v<T, bool>) {
            convert_into(n, path, member, to_bool);
          } else if constexpr (std::is_same_v<T, int> || std::is_same_v<T, size_t>) {
            convert_into(n, path, member, to_integer<T>);
          } else if constexpr (std::is_same_v<T, double>) {
            convert_into(n, path, member, to_seconds);
          } else if constexpr (std::is_same_v<T, std::string>) {
            convert_into(n, path, member, to_string);
          } else if constexpr (std::is_same_v<T, std::vector<int>>) {
            convert_list(n, path, member, to_integer<int>);
          } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            convert_list(n, path, member, to_string);
          } else if constexpr (std::is_same_v<T, std::vector<BrokerHost>>) {
            convert_list(n, path, member, to_host);
          } else if constexpr (std::is_enum_v<T>) {
            set_choice(row, n, path, member);
          } else {
            set_arguments(n, path, member);
          }
        },
        row.field);
  }

  // An enum key: the string must be one of the row's choices; the member becomes its position.
  template <typename E>
  void set_choice(const KeyRow& row, const YamlNode& n, const std::string& path, E& out) {
    std::string problem;
    auto text = to_string(n, problem);
    if (!text) {
      error(n.line, path, problem);
      return;
    }
    const auto choices = split_choices(row.choices);
    const auto it = std::find(choices.begin(), choices.end(), *text);
    if (it == choices.end()) {
      error_at(path, not_a_choice(choices, *text));
      return;
    }
    out = static_cast<E>(it - choices.begin());
  }

  void set_arguments(const YamlNode& n, const std::string& path,
                     std::map<std::string, ArgValue>& out) {
    if (n.kind == YamlNode::Kind::null) return;
    if (n.kind != YamlNode::Kind::mapping) {
      error(n.line, path, "expected a mapping, got " + describe(n));
      return;
    }
    for (const auto& [k, v] : n.entries) {
      if (k.kind != YamlNode::Kind::scalar) {
        error(k.line, path, "expected an argument name, got " + describe(k));
        continue;
      }
      std::string item = join_key(path, k.value);
      lines_[item] = k.line;
      if (out.count(k.value)) {
        error(k.line, item, "duplicate key");
        continue;
      }
      ArgValue a;
      if (convert_into(v, item, a, to_arg)) out.emplace(k.value, std::move(a));
    }
  }

  void resolve_hosts() {
    auto& b = config_.broker;
    if (!lines_.count("broker.hosts")) b.hosts = {{"127.0.0.1", 0}};
    for (auto& h : b.hosts)
      if (h.port == 0) h.port = b.port;
  }

  // ---- phase 3: semantics

  void check_range(const KeyRow& row, const std::string& path, double v) {
    if (v >= row.min && v <= row.max) return;
    std::string want = row.max == kInf ? fmt::format("must be at least {}", row.min)
                                       : fmt::format("must be between {} and {}", row.min, row.max);
    error_at(path, fmt::format("{}, got {}", want, v));
  }

  void check_row(const KeyRow& row, const std::string& path, Target t) {
    std::visit(
        [&](auto ref) {
          const auto& member = ref(t);
          using T = std::decay_t<decltype(member)>;
          if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
            check_range(row, path, static_cast<double>(member));
          } else if constexpr (std::is_same_v<T, std::vector<int>>) {
            for (size_t i = 0; i < member.size(); ++i)
              check_range(row, fmt::format("{}[{}]", path, i), member[i]);
          } else if constexpr (std::is_same_v<T, std::string>) {
            check_string(row, path, member);
          }
        },
        row.field);
  }

  void check_string(const KeyRow& row, const std::string& path, const std::string& v) {
    if (row.required && v.empty()) {
      error_at(path, lines_.count(path) ? "may not be empty" : "is required");
      return;
    }
    if (row.choices.empty()) return;
    const auto choices = split_choices(row.choices);
    if (std::find(choices.begin(), choices.end(), v) == choices.end()) error_at(path, not_a_choice(choices, v));
  }

  void check_file(const std::string& path, const std::string& file) {
    if (file.empty() || ::access(file.c_str(), R_OK) == 0) return;
    error_at(path, fmt::format("cannot read \"{}\": {}", file, std::strerror(errno)));
  }

  void check_semantics() {
    for (const auto& row : kKeyTable) {
      if (!is_forwarder_row(row)) {
        check_row(row, std::string(row.key), Target{&config_, nullptr});
        continue;
      }
      std::string_view rest = row.key.substr(kForwarderPrefix.size());
      for (size_t i = 0; i < config_.forwarders.size(); ++i)
        if (!unchecked_forwarders_.count(i))
          check_row(row, fmt::format("forwarders[{}].{}", i, rest),
                    Target{&config_, &config_.forwarders[i]});
    }

    const auto& http = config_.http;
    for (size_t i = 0; i < http.ports.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (http.ports[i] == http.ports[j]) {
          std::string key = fmt::format("http.ports[{}]", i);
          error_at(key, fmt::format("port {} is listed twice", http.ports[i]));
        }

    const auto& broker = config_.broker;
    if (broker.hosts.empty() && !lines_.count("broker.hosts[0]"))
      error_at("broker.hosts", "needs at least one host");
    if (broker.tls.enabled) {
      check_file("broker.tls.ca", broker.tls.ca);
      check_file("broker.tls.cert", broker.tls.cert);
      check_file("broker.tls.key", broker.tls.key);
    }
    check_pair("broker.tls", broker.tls.cert, broker.tls.key);

    if (config_.rpc.max_timeout < config_.rpc.timeout)
      error_at("rpc.max_timeout",
               fmt::format("must be at least rpc.timeout ({})", config_.rpc.timeout));

    std::map<std::string, size_t> names;
    for (size_t i = 0; i < config_.forwarders.size(); ++i) {
      if (unchecked_forwarders_.count(i)) continue;
      const auto& f = config_.forwarders[i];
      std::string p = fmt::format("forwarders[{}]", i);
      if (!f.name.empty() && !names.emplace(f.name, i).second)
        error_at(p + ".name",
                 fmt::format("\"{}\" is also the name of forwarders[{}]", f.name, names[f.name]));
      if (f.format == ForwarderFormat::oslo) {
        if (f.oslo.topic.empty()) error_at(p + ".oslo.topic", "is required with format oslo");
      } else if (f.queue.empty()) {
        error_at(p + ".queue", "is required");
      }
      if (f.format == ForwarderFormat::vcd && f.vcd.extension.empty())
        error_at(p + ".vcd.extension", "is required with format vcd");
      if (!f.backend.url.empty())
        if (auto problem = forward::backend_url_problem(f.backend.url)) error_at(p + ".backend.url", *problem);
      check_file(p + ".backend.ca", f.backend.ca);
      check_file(p + ".backend.cert", f.backend.cert);
      check_file(p + ".backend.key", f.backend.key);
      check_pair(p + ".backend", f.backend.cert, f.backend.key);
      if (!f.rewrite_from.empty())
        if (auto problem = forward::Rewrite::check(f.rewrite_from))
          error_at(p + ".rewrite.from",
                   fmt::format("bad regular expression \"{}\": {}", f.rewrite_from, *problem));
      if (f.retry.max_delay < f.retry.initial_delay)
        error_at(p + ".retry.max_delay",
                 fmt::format("must be at least retry.initial_delay ({})", f.retry.initial_delay));
      if (!f.declare.bindings.empty() && f.declare.exchange_name.empty())
        error_at(p + ".declare.bindings",
                 "needs declare.exchange.name (the exchange to bind the queue to)");
    }
  }

  // A client certificate needs its key and the other way round.
  void check_pair(const std::string& prefix, const std::string& cert, const std::string& key) {
    if (cert.empty() == key.empty()) return;
    std::string missing = prefix + (cert.empty() ? ".cert" : ".key");
    std::string given = prefix + (cert.empty() ? ".key" : ".cert");
    error(line_of(given), missing, fmt::format("is required with {}", given));
  }

  std::string file_;
  Config config_;
  std::vector<ConfigError> errors_;
  std::set<size_t> unchecked_forwarders_;  // entries that were not mappings: nothing to check
  std::map<std::string, int> lines_;       // every key and list entry given in the file -> its line
};

// ---------------------------------------------------------------- docs

std::string doc_value(bool v) { return v ? "true" : "false"; }
std::string doc_value(int v) { return fmt::format("{}", v); }
std::string doc_value(size_t v) { return fmt::format("{}", v); }
std::string doc_value(double v) { return fmt::format("{}", v); }
std::string doc_value(const std::string& v) { return v.empty() ? "\"\"" : v; }
std::string doc_value(const std::vector<int>& v) { return fmt::format("[{}]", fmt::join(v, ", ")); }
std::string doc_value(const std::vector<std::string>& v) {
  return fmt::format("[{}]", fmt::join(v, ", "));
}
std::string doc_value(const std::vector<BrokerHost>& v) {
  std::vector<std::string> hosts;
  for (const auto& h : v) hosts.push_back(fmt::format("{}:{}", h.host, h.port));
  return doc_value(hosts);
}
std::string doc_value(const std::map<std::string, ArgValue>& v) {
  std::vector<std::string> args;
  for (const auto& [k, a] : v) args.push_back(fmt::format("{}: {}", k, a.text));
  return fmt::format("{{{}}}", fmt::join(args, ", "));
}

std::string_view doc_type(const Field& field) {
  static constexpr std::string_view kTypes[] = {
      "boolean",          "integer",         "size (bytes)",  "duration (seconds)", "string",
      "list of integers", "list of strings", "list of hosts", "map of scalars", "string"};
  static_assert(std::size(kTypes) == std::variant_size_v<Field>);
  return kTypes[field.index()];
}

}  // namespace

ConfigResult config_parse(const std::string& text, const std::string& name) {
  ConfigError error;
  auto root = yaml_tree(text, name, error);
  if (!root) return ConfigResult{nullptr, {error}};
  Loader loader(name);
  loader.load(*root);
  return std::move(loader).finish();
}

ConfigResult config_load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return ConfigResult{nullptr,
                        {{path, 0, "", fmt::format("cannot read: {}", std::strerror(errno))}}};
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return ConfigResult{nullptr, {{path, 0, "", "read error"}}};
  return config_parse(text.str(), path);
}

std::vector<std::string> config_restart_keys(const Config& old_config, const Config& new_config) {
  // The accessors take non-const targets; copies keep the callers' configs untouched.
  Config a = old_config, b = new_config;
  std::vector<std::string> keys;
  for (const auto& row : kKeyTable) {
    if (row.reloadable) continue;
    auto differs = [&](Target ta, Target tb) {
      return std::visit([&](auto ref) { return !(ref(ta) == ref(tb)); }, row.field);
    };
    if (!is_forwarder_row(row)) {
      if (differs({&a, nullptr}, {&b, nullptr})) keys.emplace_back(row.key);
      continue;
    }
    bool changed = a.forwarders.size() != b.forwarders.size();
    for (size_t i = 0; !changed && i < a.forwarders.size(); ++i)
      changed = differs({&a, &a.forwarders[i]}, {&b, &b.forwarders[i]});
    if (changed) keys.emplace_back(row.key);
  }
  return keys;
}

std::vector<ConfigKeyDoc> config_key_table() {
  Config defaults;
  ForwarderConfig forwarder;
  std::vector<ConfigKeyDoc> docs;
  for (const auto& row : kKeyTable) {
    std::string value = std::visit(
        [&](auto ref) {
          const auto& v = ref(Target{&defaults, &forwarder});
          if constexpr (std::is_enum_v<std::decay_t<decltype(v)>>)
            return std::string(split_choices(row.choices).at(static_cast<size_t>(v)));
          else
            return doc_value(v);
        },
        row.field);
    if (!row.default_text.empty()) value = row.default_text;
    if (row.required && value == "\"\"") value = "(required)";
    std::string allowed(row.choices);
    if (row.min != -kInf)
      allowed = row.max == kInf ? fmt::format("at least {}", row.min)
                                : fmt::format("{} to {}", row.min, row.max);
    docs.push_back({std::string(row.key), std::string(doc_type(row.field)), value, row.reloadable,
                    allowed});
  }
  return docs;
}

}  // namespace warren
