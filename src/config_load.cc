// Phases 1 and 2 of reading the configuration: YAML text -> a small tree with line numbers
// (yaml_tree.h) -> Config, walked against the key table (config_table.h): unknown keys, wrong
// types and duplicates are reported, every one with its file:line, then phase 3 (config_check.h)
// checks what was read.
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string_view>

#include "config.h"
#include "config_check.h"
#include "config_table.h"
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

// ---------------------------------------------------------------- phase 2

class Loader {
 public:
  explicit Loader(std::string file) : report_(file) { config_.path = std::move(file); }

  void load(const YamlNode& root) {
    walk_mapping(root, "", "", ConfigTarget{&config_, nullptr});
    resolve_hosts();
    config_check(config_, unchecked_forwarders_, report_);
  }

  ConfigResult finish() && {
    ConfigResult result;
    if (report_.ok()) result.config = std::make_shared<const Config>(std::move(config_));
    result.errors = std::move(report_).take_errors();
    return result;
  }

 private:
  void error(int line, std::string key, std::string problem) {
    report_.error(line, std::move(key), std::move(problem));
  }

  // pattern: the table's name for this mapping ("forwarders[].backend"); path: the name the
  // user sees ("forwarders[2].backend").
  void walk_mapping(const YamlNode& node, const std::string& pattern, const std::string& path,
                    ConfigTarget t) {
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
      report_.given(kd, k.line);
      if (const KeyRow* row = config_find_row(kp)) {
        set_value(*row, v, kd, t);
      } else if (config_is_section(kp)) {
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
      report_.given(item, node.items[i].line);
      config_.forwarders.emplace_back();
      if (node.items[i].kind != YamlNode::Kind::mapping) {
        error(node.items[i].line, item, "expected a mapping, got " + describe(node.items[i]));
        unchecked_forwarders_.insert(i);
        continue;
      }
      walk_mapping(node.items[i], pattern, item,
                   ConfigTarget{&config_, &config_.forwarders.back()});
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
      report_.given(item, n.items[i].line);
      T value{};
      if (convert_into(n.items[i], item, value, convert)) out.push_back(std::move(value));
    }
  }

  void set_value(const KeyRow& row, const YamlNode& n, const std::string& path, ConfigTarget t) {
    if (n.kind == YamlNode::Kind::scalar) report_.given(path, n.line);
    std::visit(
        [&](auto ref) {
          auto& member = ref(t);
          using T = std::decay_t<decltype(member)>;
          if constexpr (std::is_same_v<T, bool>) {
            convert_into(n, path, member, to_bool);
          } else if constexpr (std::is_same_v<T, int>) {
            if (!row.per_core) {
              convert_into(n, path, member, to_integer<T>);
            } else if (n.kind == YamlNode::Kind::scalar && !n.quoted && n.value == "auto") {
              member = usable_cores();
            } else {
              convert_into(n, path, member, [](const YamlNode& v, std::string& problem) {
                auto count = to_integer<int>(v, problem);
                if (!count && problem.starts_with("expected an integer"))
                  problem = "expected an integer or auto, got " + describe(v);
                return count;
              });
            }
          } else if constexpr (std::is_same_v<T, size_t>) {
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
      report_.error_at(path, not_a_choice(choices, *text));
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
      report_.given(item, k.line);
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
    if (!report_.is_given("broker.hosts")) b.hosts = {{"127.0.0.1", 0}};
    for (auto& h : b.hosts)
      if (h.port == 0) h.port = b.port;
  }

  Config config_;
  ConfigReport report_;
  std::set<size_t> unchecked_forwarders_;  // entries that were not mappings: nothing to check
};

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

}  // namespace warren
