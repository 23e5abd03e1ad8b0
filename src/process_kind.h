// What a worker process does: serve HTTP on one port, or run one queue set's forwarders. Its
// name is the same everywhere a user sees it: log roles, /stats workers[].kind, the /metrics
// label kind="...", the master's status.
#pragma once

#include <optional>
#include <string_view>

namespace warren {

enum class ProcessKind { http, forward };

constexpr std::string_view process_kind_name(ProcessKind kind) {
  switch (kind) {
    case ProcessKind::http:
      return "http";
    case ProcessKind::forward:
      return "forward";
  }
  return "unknown";  // not reached: the switch names every kind
}

// The inverse, for what a worker reports about itself: nullopt for a name no kind has.
constexpr std::optional<ProcessKind> process_kind_from_name(std::string_view name) {
  for (ProcessKind kind : {ProcessKind::http, ProcessKind::forward})
    if (process_kind_name(kind) == name) return kind;
  return std::nullopt;
}

}  // namespace warren
