// Phase 3 of reading the configuration, the semantic check (ranges, choices, cross-key rules),
// and the report every phase writes its problems into. Internal to config_*.cc.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "config.h"

namespace warren {

// Every problem found in one file, and the line of every key and list entry the file gave: a
// semantic problem is reported at its key's line, or at its nearest given parent's.
class ConfigReport {
 public:
  explicit ConfigReport(std::string file) : file_(std::move(file)) {}

  void error(int line, std::string key, std::string problem);
  void error_at(const std::string& key, std::string problem);  // at line_of(key)

  void given(const std::string& key, int line) { lines_[key] = line; }
  bool is_given(const std::string& key) const { return lines_.count(key) > 0; }
  // The line of a key, or of its nearest parent given in the file (a default has no line).
  int line_of(std::string key) const;

  bool ok() const { return errors_.empty(); }
  std::vector<ConfigError> take_errors() &&;  // in line order

 private:
  std::string file_;
  std::vector<ConfigError> errors_;
  std::map<std::string, int> lines_;
};

// Checks what the loader made of a file. `unchecked_forwarders`: the entries that were not
// mappings (already reported; nothing in them to check). `config` is only read; it is not const
// because the key table's accessors are shared with the loader, which writes through them.
void config_check(Config& config, const std::set<size_t>& unchecked_forwarders,
                  ConfigReport& report);

}  // namespace warren
