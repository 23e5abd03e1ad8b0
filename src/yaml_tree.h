// Phase 1 of reading the configuration: YAML text -> a small tree of nodes with line numbers,
// built from libyaml's events (anchors and aliases resolved, depth and size bounded). The
// loader in config_load.cc walks this tree against the key table.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config.h"

namespace warren {

struct YamlEntry;  // a mapping's key and value

struct YamlNode {
  enum class Kind { null, scalar, sequence, mapping } kind = Kind::null;
  std::string value;
  bool quoted = false;  // quoted, block scalar or !!str: always a string, never a number or bool
  int line = 0;         // 1-based
  std::vector<YamlNode> items;
  // Not a std::pair of two nodes: a pair of an incomplete type is refused by clang (make fuzz).
  std::vector<YamlEntry> entries;
};

struct YamlEntry {
  YamlNode first, second;
};

// The document's root (a null node for an empty stream), or nullopt with `error` set to the
// first problem: its file (`file`), line and what is wrong.
std::optional<YamlNode> yaml_tree(const std::string& text, const std::string& file,
                                  ConfigError& error);

}  // namespace warren
