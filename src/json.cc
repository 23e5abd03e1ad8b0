#include "json.h"

namespace warren {

std::string json_text(const nlohmann::json& value, int indent) {
  return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

using json = nlohmann::json;

// Whether arrays and objects nest at most `max_depth` deep, by the brackets outside strings: one
// byte loop. (A parser callback that counted levels ran on every token and was a quarter of a
// worker's CPU in batches.) For text that is not JSON the answer means nothing; the parse that
// follows refuses it.
bool brackets_nest_within(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

// Counts how deep arrays and objects nest, building nothing.
class DepthCheck : public nlohmann::json_sax<json> {
 public:
  DepthCheck(size_t max_depth, std::string_view nested_key) : max_(max_depth), nested_key_(nested_key) {}
  bool too_deep() const { return too_deep_; }

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool string(string_t& s) override {
    if (!in_nested_key_) return true;
    in_nested_key_ = false;
    too_deep_ = !json_nests_within(s, max_);
    return !too_deep_;
  }
  bool key(string_t& k) override {
    in_nested_key_ = !nested_key_.empty() && k == nested_key_;
    return true;
  }
  bool start_object(std::size_t) override { return enter(); }
  bool start_array(std::size_t) override { return enter(); }
  bool end_object() override { return leave(); }
  bool end_array() override { return leave(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  bool enter() {
    in_nested_key_ = false;
    too_deep_ = ++depth_ > max_;
    return !too_deep_;
  }
  bool leave() {
    --depth_;
    return true;
  }

  size_t max_, depth_ = 0;
  std::string_view nested_key_;
  bool in_nested_key_ = false, too_deep_ = false;
};

}  // namespace

bool json_nests_within(std::string_view text, size_t max_depth, std::string_view nested_key) {
  if (nested_key.empty()) return brackets_nest_within(text, max_depth);
  DepthCheck check(max_depth, nested_key);
  json::sax_parse(text, &check);
  return !check.too_deep();
}

nlohmann::json json_parse(std::string_view text) {
  // nlohmann takes a NUL byte for the end of the text and parses what came before: "{}\0junk"
  // would be {}. No JSON text holds a raw NUL (in a string it is \u0000).
  if (text.find('\0') != std::string_view::npos || !json_nests_within(text))
    return json(json::value_t::discarded);
  return json::parse(text, nullptr, false);
}

}  // namespace warren
