#include "yaml_tree.h"

#include <fmt/format.h>

#include <map>
#include <set>
#include <string_view>

#include "handles.h"

namespace warren {

namespace {

// Deep nesting would exhaust the stack and alias expansion can grow exponentially
// ("billion laughs"): both are bounded.
constexpr int kMaxDepth = 64;
constexpr size_t kMaxNodes = 100000;

class TreeBuilder {
 public:
  TreeBuilder(const std::string& text, std::string file) : file_(std::move(file)) {
    parser_.reset(new yaml_parser_t);
    yaml_parser_initialize(parser_.get());
    yaml_parser_set_input_string(parser_.get(), reinterpret_cast<const unsigned char*>(text.data()),
                                 text.size());
  }

  // The document's root (null for an empty stream), or nullopt with error() set.
  std::optional<YamlNode> build() {
    auto ev = next();
    if (!ev || ev->type != YAML_STREAM_START_EVENT) return fail_if_unset();
    ev = next();
    if (!ev) return std::nullopt;
    if (ev->type == YAML_STREAM_END_EVENT) return YamlNode{};
    if (ev->type != YAML_DOCUMENT_START_EVENT) return fail_if_unset();
    ev = next();
    if (!ev) return std::nullopt;
    YamlNode root;
    if (!node_from(*ev, root, 0)) return std::nullopt;
    ev = next();
    if (!ev) return std::nullopt;
    ev = next();
    if (!ev) return std::nullopt;
    if (ev->type != YAML_STREAM_END_EVENT) {
      error_ = {file_, mark_line(ev->start_mark), "", "only one YAML document is allowed"};
      return std::nullopt;
    }
    return root;
  }
  const ConfigError& error() const { return error_; }

 private:
  static int mark_line(const yaml_mark_t& m) { return static_cast<int>(m.line) + 1; }

  YamlEventPtr next() {
    YamlEventPtr ev(new yaml_event_t{});
    if (!yaml_parser_parse(parser_.get(), ev.get())) {
      const auto& p = *parser_;
      std::string problem = "YAML syntax error: ";
      problem += p.problem ? p.problem : "unknown error";
      if (p.context) problem += fmt::format(" ({})", p.context);
      error_ = {file_, mark_line(p.problem_mark), "", problem};
      return nullptr;
    }
    return ev;
  }

  std::optional<YamlNode> fail_if_unset() {
    if (error_.problem.empty()) error_ = {file_, 1, "", "unexpected YAML event"};
    return std::nullopt;
  }

  bool count(const YamlNode& n) {
    nodes_ += 1;
    for (const auto& item : n.items)
      if (!count(item)) return false;
    for (const auto& [k, v] : n.entries)
      if (!count(k) || !count(v)) return false;
    if (nodes_ > kMaxNodes) {
      error_ = {file_, n.line, "", fmt::format("more than {} YAML nodes", kMaxNodes)};
      return false;
    }
    return true;
  }

  void remember_anchor(const yaml_char_t* anchor, const YamlNode& n) {
    if (anchor) anchors_[reinterpret_cast<const char*>(anchor)] = n;
  }

  bool node_from(const yaml_event_t& ev, YamlNode& out, int depth) {
    out.line = mark_line(ev.start_mark);
    if (depth > kMaxDepth) {
      error_ = {file_, out.line, "", fmt::format("nested deeper than {} levels", kMaxDepth)};
      return false;
    }
    switch (ev.type) {
      case YAML_ALIAS_EVENT:
        return alias_from(ev, out);
      case YAML_SCALAR_EVENT:
        return scalar_from(ev, out);
      case YAML_SEQUENCE_START_EVENT:
        return sequence_from(ev, out, depth);
      case YAML_MAPPING_START_EVENT:
        return mapping_from(ev, out, depth);
      default:
        error_ = {file_, out.line, "", "unexpected YAML event"};
        return false;
    }
  }

  bool alias_from(const yaml_event_t& ev, YamlNode& out) {
    auto it = anchors_.find(reinterpret_cast<const char*>(ev.data.alias.anchor));
    if (it == anchors_.end()) {
      error_ = {file_, out.line, "", "unknown YAML alias"};
      return false;
    }
    out = it->second;
    out.line = mark_line(ev.start_mark);
    return count(out);
  }

  bool scalar_from(const yaml_event_t& ev, YamlNode& out) {
    const auto& s = ev.data.scalar;
    out.value.assign(reinterpret_cast<const char*>(s.value), s.length);
    const char* tag = reinterpret_cast<const char*>(s.tag);
    out.quoted = s.style != YAML_PLAIN_SCALAR_STYLE ||
                 (tag && std::string_view(tag) == "tag:yaml.org,2002:str");
    static const std::set<std::string_view> kNulls{"", "~", "null", "Null", "NULL"};
    out.kind =
        !out.quoted && kNulls.count(out.value) ? YamlNode::Kind::null : YamlNode::Kind::scalar;
    remember_anchor(s.anchor, out);
    return count(out);
  }

  bool sequence_from(const yaml_event_t& ev, YamlNode& out, int depth) {
    out.kind = YamlNode::Kind::sequence;
    bool read = each_child(YAML_SEQUENCE_END_EVENT, [&](const yaml_event_t& item) {
      out.items.emplace_back();
      return node_from(item, out.items.back(), depth + 1);
    });
    if (!read) return false;
    remember_anchor(ev.data.sequence_start.anchor, out);
    return count_shallow();
  }

  bool mapping_from(const yaml_event_t& ev, YamlNode& out, int depth) {
    out.kind = YamlNode::Kind::mapping;
    bool read = each_child(YAML_MAPPING_END_EVENT, [&](const yaml_event_t& key) {
      out.entries.emplace_back();
      if (!node_from(key, out.entries.back().first, depth + 1)) return false;
      auto value = next();
      return value && node_from(*value, out.entries.back().second, depth + 1);
    });
    if (!read) return false;
    remember_anchor(ev.data.mapping_start.anchor, out);
    return count_shallow();
  }

  // Calls `child` with each event up to the collection's `end` event; false when the parser or
  // `child` fails.
  template <typename Child>
  bool each_child(yaml_event_type_t end, Child child) {
    for (;;) {
      auto ev = next();
      if (!ev) return false;
      if (ev->type == end) return true;
      if (!child(*ev)) return false;
    }
  }

  // A collection's children were counted as they were built.
  bool count_shallow() {
    if (++nodes_ <= kMaxNodes) return true;
    error_ = {file_, 0, "", fmt::format("more than {} YAML nodes", kMaxNodes)};
    return false;
  }

  std::string file_;
  YamlParserPtr parser_;
  std::map<std::string, YamlNode> anchors_;
  size_t nodes_ = 0;
  ConfigError error_;
};

}  // namespace

std::optional<YamlNode> yaml_tree(const std::string& text, const std::string& file,
                                  ConfigError& error) {
  TreeBuilder builder(text, file);
  auto root = builder.build();
  if (!root) error = builder.error();
  return root;
}

}  // namespace warren
