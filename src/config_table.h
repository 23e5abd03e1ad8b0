// The key table's row type, shared by the files that read it: config.cc (the table itself, the
// restart keys and the docs), config_load.cc (YAML -> Config) and config_check.cc (semantics).
// Not part of the config API (config.h): only these files include it.
#pragma once

#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config.h"

namespace warren {

// Rows reach their member through a capture-less accessor: global keys through config,
// forwarders[] keys through the forwarder being read.
struct ConfigTarget {
  Config* config;
  ForwarderConfig* forwarder;
};
template <typename T>
using ConfigRef = T& (*)(ConfigTarget);
using ConfigField =
    std::variant<ConfigRef<bool>, ConfigRef<int>, ConfigRef<size_t>, ConfigRef<double>,
                 ConfigRef<std::string>, ConfigRef<std::vector<int>>,
                 ConfigRef<std::vector<std::string>>, ConfigRef<std::vector<BrokerHost>>,
                 ConfigRef<std::map<std::string, ArgValue>>, ConfigRef<ForwarderFormat>>;

constexpr double kConfigNoLimit = std::numeric_limits<double>::infinity();
constexpr std::string_view kForwarders = "forwarders";          // the one list of sections
constexpr std::string_view kForwarderPrefix = "forwarders[].";  // its rows' keys

struct KeyRow {
  std::string_view key;  // dotted path; list entries as "forwarders[].backend.url"
  ConfigField field;
  bool reloadable = true;                              // false: bound or opened by the master
  double min = -kConfigNoLimit, max = kConfigNoLimit;  // numbers, and each element of a list
  std::string_view choices = {};       // "a|b|c": the value must be one of them ("" may be one);
                                       // an enum member takes the position of its choice
  bool required = false;               // a string that may not be empty
  std::string_view default_text = {};  // for the docs, when the member's initial value is not it
  bool per_core = false;               // an integer that may be `auto`: one per core (nginx's
                                       // worker_processes auto)
};

// Every row, in the order of etc/warren.yml.
std::span<const KeyRow> config_rows();

// A row's choices, "a|b|c", as a list.
std::vector<std::string_view> split_choices(std::string_view choices);
// "must be one of a, b, c, got "value"".
std::string not_a_choice(const std::vector<std::string_view>& choices, std::string_view value);

inline bool is_forwarder_row(const KeyRow& row) { return row.key.starts_with(kForwarderPrefix); }

// The row of a key pattern ("forwarders[].backend.url"), or nullptr.
const KeyRow* config_find_row(std::string_view key);

// A section is any proper prefix of a key: "broker", "broker.tls", "forwarders[].declare".
bool config_is_section(std::string_view key);

}  // namespace warren
