// man_keys: fills the key section of man/warren.yml.5 from the config key table, so the type,
// default, allowed values and reload rule printed there are the ones warrend enforces.
//
//   build/man_keys man/warren.yml.5.in > man/warren.yml.5      (what `make man` runs)
//
// The template is the hand-written page; each key's entry is a line `.\" @key <dotted key>`
// followed by its prose. That line becomes the entry's tag and a line of facts from
// config_key_table(). Every key of the table must have exactly one entry and every entry a key:
// otherwise nothing is written and the exit code is 1 (t/checks/man-pages runs this too).
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "config.h"

namespace {

constexpr std::string_view kMarker = ".\\\" @key ";

// Text as roff input: a backslash is \e, a hyphen-minus \- (so it copies as one), and a leading
// dot or quote cannot start a request.
std::string roff(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') out += "\\e";
    else if (c == '-') out += "\\-";
    else out += c;
  }
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out.insert(0, "\\&");
  return out;
}

// "a|b|c" as "one of a, b, c"; an empty choice reads as "" (none).
std::string choices_text(std::string_view choices) {
  std::string out = "one of ";
  size_t start = 0;
  for (bool first = true;; first = false) {
    size_t bar = choices.find('|', start);
    auto item = choices.substr(start, bar == std::string_view::npos ? bar : bar - start);
    if (!first) out += ", ";
    out += item.empty() ? "\"\" (none)" : std::string(item);
    if (bar == std::string_view::npos) break;
    start = bar + 1;
  }
  return out;
}

std::string entry(const warren::ConfigKeyDoc& doc) {
  std::string facts = fmt::format("\\fI{}\\fR, default \\fB{}\\fR", roff(doc.type),
                                  roff(doc.default_value));
  if (!doc.allowed.empty()) {
    // A list's bounds hold for each element.
    facts += doc.type.starts_with("list of") ? ", each " : ", ";
    facts += roff(doc.allowed.find('|') != std::string::npos ? choices_text(doc.allowed)
                                                             : doc.allowed);
  }
  facts += doc.reloadable ? "; a reload applies a change" : "; a change needs a restart";
  return fmt::format(".TP\n.B {}\n{}.\n.br\n", roff(doc.key), facts);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fmt::print(stderr, "usage: man_keys TEMPLATE > PAGE\n");
    return 64;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    fmt::print(stderr, "man_keys: cannot read {}\n", argv[1]);
    return 1;
  }
  std::map<std::string, warren::ConfigKeyDoc> table;
  for (auto& doc : warren::config_key_table()) table.emplace(doc.key, doc);

  std::ostringstream out;
  std::set<std::string> seen;
  int errors = 0, line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (!line.starts_with(kMarker)) {
      out << line << '\n';
      continue;
    }
    std::string key = line.substr(kMarker.size());
    auto it = table.find(key);
    if (it == table.end()) {
      fmt::print(stderr, "{}:{}: {} is not a key of the table in src/config.cc\n", argv[1],
                 line_no, key);
      ++errors;
    } else if (!seen.insert(key).second) {
      fmt::print(stderr, "{}:{}: {} has a second entry\n", argv[1], line_no, key);
      ++errors;
    } else {
      out << entry(it->second);
    }
  }
  for (const auto& [key, doc] : table)
    if (!seen.count(key)) {
      fmt::print(stderr, "{}: no entry for {} (add a line `.\\\" @key {}`)\n", argv[1], key, key);
      ++errors;
    }
  if (errors) return 1;
  std::cout << out.str();
  return std::cout.flush() ? 0 : 1;
}
