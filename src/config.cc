// The configuration's key table: one row per key with its member, type, limits, default and
// whether a reload may change it (config_table.h). Three readers drive off it: the loader
// (config_load.cc: YAML -> Config), the semantic check (config_check.cc), and, here, the keys a
// reload may not change and the docs (man/warren.yml.5 and etc/warren.yml are checked against it).
#include "config.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "config_table.h"

namespace warren {

int usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
}

namespace {

// clang-format off
#define CONFIG_KEY(member) +[](ConfigTarget t) -> auto& { return t.config->member; }
#define FORWARDER_KEY(member) +[](ConfigTarget t) -> auto& { return t.forwarder->member; }
// clang-format on

constexpr double kMaxSeconds = 1e7;  // ~115 days: keeps every duration convertible to a timeval

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
     .max = 1024, .default_text = "auto", .per_core = true},
    {.key = "http.max_body", .field = CONFIG_KEY(http.max_body), .min = 1},
    {.key = "http.max_body_buffer", .field = CONFIG_KEY(http.max_body_buffer), .min = 1},
    {.key = "http.max_output_buffer", .field = CONFIG_KEY(http.max_output_buffer), .min = 1},
    {.key = "http.max_connections", .field = CONFIG_KEY(http.max_connections), .min = 1,
     .max = 1 << 20},
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
    {.key = "forwarders[].vcd.forward_rights", .field = FORWARDER_KEY(vcd.forward_rights)},
    {.key = "forwarders[].vcd.check_org_membership", .field = FORWARDER_KEY(vcd.check_org_membership)},
    {.key = "forwarders[].vcd.deploy", .field = FORWARDER_KEY(vcd.deploy), .choices = "manual|auto"},
    {.key = "forwarders[].vcd.api.url", .field = FORWARDER_KEY(vcd.api.url)},
    {.key = "forwarders[].vcd.api.username", .field = FORWARDER_KEY(vcd.api.username)},
    {.key = "forwarders[].vcd.api.password", .field = FORWARDER_KEY(vcd.api.password)},
    {.key = "forwarders[].vcd.api.api_version", .field = FORWARDER_KEY(vcd.api.api_version),
     .required = true},
    {.key = "forwarders[].vcd.api.verify", .field = FORWARDER_KEY(vcd.api.verify)},
    {.key = "forwarders[].vcd.api.ca", .field = FORWARDER_KEY(vcd.api.ca)},
    {.key = "forwarders[].vcd.api.cache_ttl", .field = FORWARDER_KEY(vcd.api.cache_ttl), .min = 0,
     .max = kMaxSeconds},
    {.key = "forwarders[].vcd.api.timeout", .field = FORWARDER_KEY(vcd.api.timeout), .min = 0.001,
     .max = kMaxSeconds},
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

}  // namespace

std::span<const KeyRow> config_rows() { return kKeyTable; }

const KeyRow* config_find_row(std::string_view key) {
  for (const auto& row : kKeyTable)
    if (row.key == key) return &row;
  return nullptr;
}

bool config_is_section(std::string_view key) {
  for (const auto& row : kKeyTable)
    if (row.key.size() > key.size() && row.key.starts_with(key) && row.key[key.size()] == '.')
      return true;
  return false;
}

namespace {

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

std::string_view doc_type(const ConfigField& field) {
  static constexpr std::string_view kTypes[] = {
      "boolean",          "integer",         "size (bytes)",  "duration (seconds)", "string",
      "list of integers", "list of strings", "list of hosts", "map of scalars", "string"};
  static_assert(std::size(kTypes) == std::variant_size_v<ConfigField>);
  return kTypes[field.index()];
}

}  // namespace

std::vector<std::string> config_restart_keys(const Config& old_config, const Config& new_config) {
  // The accessors take non-const targets; copies keep the callers' configs untouched.
  Config a = old_config, b = new_config;
  std::vector<std::string> keys;
  for (const auto& row : kKeyTable) {
    if (row.reloadable) continue;
    auto differs = [&](ConfigTarget ta, ConfigTarget tb) {
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

std::vector<ConfigKeyDoc> config_key_table() {
  Config defaults;
  ForwarderConfig forwarder;
  std::vector<ConfigKeyDoc> docs;
  for (const auto& row : kKeyTable) {
    std::string value = std::visit(
        [&](auto ref) {
          const auto& v = ref(ConfigTarget{&defaults, &forwarder});
          if constexpr (std::is_enum_v<std::decay_t<decltype(v)>>)
            return std::string(split_choices(row.choices).at(static_cast<size_t>(v)));
          else
            return doc_value(v);
        },
        row.field);
    if (!row.default_text.empty()) value = row.default_text;
    if (row.required && value == "\"\"") value = "(required)";
    std::string allowed(row.choices);
    if (row.min != -kConfigNoLimit)
      allowed = row.max == kConfigNoLimit ? fmt::format("at least {}", row.min)
                                          : fmt::format("{} to {}", row.min, row.max);
    docs.push_back({std::string(row.key), std::string(doc_type(row.field)), value, row.reloadable,
                    allowed});
  }
  return docs;
}

}  // namespace warren
