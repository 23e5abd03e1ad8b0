// The statelessd request translation without a broker: paths, Basic credentials, forms,
// multipart bodies, every field's mapping and its 400, and batch bodies.
#include "http/publish_request.h"

#include <gtest/gtest.h>

#include "base64.h"

namespace warren {
namespace {

using nlohmann::json;

PublishPath path_ok(std::string_view raw) {
  auto r = parse_publish_path(raw);
  if (auto* e = std::get_if<HttpError>(&r)) {
    ADD_FAILURE() << raw << ": " << e->status << " " << e->detail;
    return {};
  }
  return std::get<PublishPath>(r);
}

int path_status(std::string_view raw) {
  auto r = parse_publish_path(raw);
  auto* e = std::get_if<HttpError>(&r);
  return e ? e->status : 0;
}

std::string basic(std::string_view user_colon_password) {
  return "Basic " + base64_encode(user_colon_password);
}

// One field applied to a fresh message: the message, or the error.
std::variant<core::Message, HttpError> field(const std::string& key, const std::string& value) {
  core::Message m;
  if (auto e = apply_field(m, key, value)) return *e;
  return m;
}

core::Message field_ok(const std::string& key, const std::string& value) {
  auto r = field(key, value);
  if (auto* e = std::get_if<HttpError>(&r)) {
    ADD_FAILURE() << key << "=" << value << ": " << e->detail;
    return {};
  }
  return std::get<core::Message>(r);
}

// The 400 for a bad value: its detail must name the field.
void expect_bad(const std::string& key, const std::string& value) {
  auto r = field(key, value);
  auto* e = std::get_if<HttpError>(&r);
  ASSERT_NE(e, nullptr) << key << "=" << value << " was accepted";
  EXPECT_EQ(e->status, 400) << key << "=" << value;
  EXPECT_TRUE(e->detail.starts_with(key + ":")) << e->detail;
}

// --- path ---

TEST(PublishPath, ThreeSegmentsAreVhostExchangeRoutingKey) {
  auto p = path_ok("/vh/ex/a.b.c");
  EXPECT_EQ(p.vhost, "vh");
  EXPECT_EQ(p.exchange, "ex");
  EXPECT_EQ(p.routing_key, "a.b.c");
  EXPECT_FALSE(p.batch);
}

TEST(PublishPath, PercentDecodedSegmentsAndTheSlashVhost) {
  auto p = path_ok("/%2f/my%20ex/k%2Fwith%2fslashes");
  EXPECT_EQ(p.vhost, "/");
  EXPECT_EQ(p.exchange, "my ex");
  EXPECT_EQ(p.routing_key, "k/with/slashes");
  EXPECT_EQ(path_ok("/%2F/ex/k").vhost, "/");
  // '+' is a plain character in a path, not a space.
  EXPECT_EQ(path_ok("/v/e/a+b").routing_key, "a+b");
}

TEST(PublishPath, AmqDefaultIsTheEmptyExchange) {
  auto p = path_ok("/%2f/amq.default/my_queue");
  EXPECT_EQ(p.exchange, "");
  EXPECT_EQ(p.routing_key, "my_queue");
  EXPECT_EQ(path_ok("/%2f/amq.direct/k").exchange, "amq.direct");
}

TEST(PublishPath, EmptyRoutingKeyIsAllowed) {
  auto p = path_ok("/v/fanout/");
  EXPECT_EQ(p.routing_key, "");
  EXPECT_FALSE(p.batch);
}

TEST(PublishPath, TwoSegmentsAreABatch) {
  auto p = path_ok("/%2f/ex");
  EXPECT_TRUE(p.batch);
  EXPECT_EQ(p.vhost, "/");
  EXPECT_EQ(p.exchange, "ex");
}

TEST(PublishPath, BadShapesAre404) {
  for (const char* raw : {"", "/", "/v", "//e/k", "/v//k", "/v/e/k/extra", "v/e/k", "/v/e/k/"})
    EXPECT_EQ(path_status(raw), 404) << raw;
}

TEST(PublishPath, MalformedPercentIs400) {
  for (const char* raw : {"/%zz/e/k", "/v/e%/k", "/v/e/k%2", "/v/e/%g0"})
    EXPECT_EQ(path_status(raw), 400) << raw;
}

TEST(PublishPath, OverlongExchangeOrKeyIs400) {
  EXPECT_EQ(path_status("/v/" + std::string(256, 'e') + "/k"), 400);
  EXPECT_EQ(path_status("/v/e/" + std::string(256, 'k')), 400);
  EXPECT_EQ(path_status("/v/e/" + std::string(255, 'k')), 0);
}

// --- Basic credentials ---

TEST(BasicAuth, UserAndPassword) {
  auto c = parse_basic_auth(basic("guest:guest"), "/");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->vhost, "/");
  EXPECT_EQ(c->username, "guest");
  EXPECT_EQ(c->password, "guest");
}

TEST(BasicAuth, PasswordMayContainColons) {
  auto c = parse_basic_auth(basic("alice:pa:ss:word"), "v");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->username, "alice");
  EXPECT_EQ(c->password, "pa:ss:word");
}

TEST(BasicAuth, EveryPaddingLength) {
  // 0, 1 and 2 '=' of padding: the decoded length must drop exactly the padding.
  for (std::string pw : {"p", "pw", "pwd", "pwd1", "pwd12"}) {
    auto c = parse_basic_auth(basic("u:" + pw), "v");
    ASSERT_TRUE(c) << pw;
    EXPECT_EQ(c->password, pw);
  }
}

TEST(BasicAuth, EmptyPasswordIsAllowed) {
  auto c = parse_basic_auth(basic("u:"), "v");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->password, "");
}

TEST(BasicAuth, SchemeIsCaseInsensitive) {
  std::string h = basic("u:p");
  h.replace(0, 5, "basic");
  EXPECT_TRUE(parse_basic_auth(h, "v"));
}

TEST(BasicAuth, OnlyPaddingIsRefusedNotACrash) {  // found by t/fuzz/publish_request
  EXPECT_FALSE(parse_basic_auth("Basic ====", "/"));
  EXPECT_FALSE(parse_basic_auth("Basic ========", "/"));
  EXPECT_FALSE(parse_basic_auth("Basic YQ===", "/"));
}

TEST(BasicAuth, Refusals) {
  EXPECT_FALSE(parse_basic_auth("", "v"));
  EXPECT_FALSE(parse_basic_auth("Basic", "v"));
  EXPECT_FALSE(parse_basic_auth("Basic ", "v"));
  EXPECT_FALSE(parse_basic_auth("Bearer abcd", "v"));
  EXPECT_FALSE(parse_basic_auth("Basic !!!!", "v"));          // not base64
  EXPECT_FALSE(parse_basic_auth("Basic Z3Vlc3Q6Z3Vlc3", "v"));  // truncated
  EXPECT_FALSE(parse_basic_auth(basic("nocolon"), "v"));      // no ':'
  EXPECT_FALSE(parse_basic_auth(basic(":password"), "v"));    // no user
}

// --- content types ---

TEST(MediaType, LowerCasedWithoutParameters) {
  EXPECT_EQ(media_type("application/x-www-form-urlencoded"), "application/x-www-form-urlencoded");
  EXPECT_EQ(media_type("Application/JSON; charset=utf-8"), "application/json");
  EXPECT_EQ(media_type(" multipart/form-data ;boundary=x"), "multipart/form-data");
  EXPECT_EQ(media_type(""), "");
}

// --- forms ---

TEST(Form, PlusIsSpaceAndPercentDecoded) {
  std::map<std::string, std::string> f;
  ASSERT_TRUE(parse_form("body=hello+world%21&content_type=text%2Fplain&a%20b=c", &f));
  EXPECT_EQ(f["body"], "hello world!");
  EXPECT_EQ(f["content_type"], "text/plain");
  EXPECT_EQ(f["a b"], "c");
  EXPECT_EQ(f.size(), 3u);
}

TEST(Form, LiteralPlusIsPercent2B) {
  std::map<std::string, std::string> f;
  ASSERT_TRUE(parse_form("body=1%2B1", &f));
  EXPECT_EQ(f["body"], "1+1");
}

TEST(Form, RepeatedKeysKeepTheLast) {
  std::map<std::string, std::string> f;
  ASSERT_TRUE(parse_form("type=a&type=b", &f));
  EXPECT_EQ(f["type"], "b");
}

TEST(Form, EmptyPairsAndValuelessKeys) {
  std::map<std::string, std::string> f;
  ASSERT_TRUE(parse_form("&&body=&x&", &f));
  EXPECT_EQ(f["body"], "");
  EXPECT_EQ(f["x"], "");
  EXPECT_EQ(f.size(), 2u);
}

TEST(Form, BinaryBytesSurvive) {
  std::map<std::string, std::string> f;
  ASSERT_TRUE(parse_form("body=%00%ff%C3%A9", &f));
  EXPECT_EQ(f["body"], std::string("\0\xff\xc3\xa9", 4));
}

TEST(Form, MalformedPercentFails) {
  for (const char* text : {"body=%zz", "body=abc%", "body=%4", "b%y=1"}) {
    std::map<std::string, std::string> f;
    EXPECT_FALSE(parse_form(text, &f)) << text;
  }
}

// --- multipart ---

// What PHP's curl sends for CURLOPT_POSTFIELDS with an array (curl's own boundary style).
std::string multipart_body(const std::string& boundary,
                           const std::vector<std::pair<std::string, std::string>>& parts,
                           bool close = true) {
  std::string out;
  for (const auto& [name, value] : parts)
    out += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" +
           value + "\r\n";
  if (close) out += "--" + boundary + "--\r\n";
  return out;
}

TEST(Multipart, CurlStyle) {
  const std::string boundary = "------------------------d74496d66958873e";
  std::map<std::string, std::string> f;
  auto body = multipart_body(boundary, {{"body", "This is a message"},
                                        {"app_id", "PHP Example"},
                                        {"timestamp", "1364403057"},
                                        {"empty", ""},
                                        {"multi", "line 1\r\nline 2\r\n"}});
  EXPECT_EQ(parse_multipart("multipart/form-data; boundary=" + boundary, body, &f), "");
  EXPECT_EQ(f["body"], "This is a message");
  EXPECT_EQ(f["app_id"], "PHP Example");
  EXPECT_EQ(f["timestamp"], "1364403057");
  EXPECT_EQ(f["empty"], "");
  EXPECT_EQ(f["multi"], "line 1\r\nline 2\r\n");
}

TEST(Multipart, QuotedBoundaryAndOtherParameters) {
  std::map<std::string, std::string> f;
  auto body = multipart_body("a b:c", {{"body", "x"}});
  EXPECT_EQ(parse_multipart("multipart/form-data; boundary=\"a b:c\"; charset=utf-8", body, &f), "");
  EXPECT_EQ(f["body"], "x");
  f.clear();
  body = multipart_body("xyz", {{"body", "y"}});
  EXPECT_EQ(parse_multipart("multipart/form-data; charset=utf-8; boundary=xyz", body, &f), "");
  EXPECT_EQ(f["body"], "y");
}

TEST(Multipart, PreambleAndAFilenameParameter) {
  std::map<std::string, std::string> f;
  std::string body =
      "preamble to ignore\r\n"
      "--b\r\nContent-Disposition: form-data; filename=\"f.txt\"; name=\"body\"\r\n"
      "Content-Type: text/plain\r\n\r\nfile contents\r\n--b--\r\n";
  EXPECT_EQ(parse_multipart("multipart/form-data; boundary=b", body, &f), "");
  EXPECT_EQ(f.size(), 1u);
  EXPECT_EQ(f["body"], "file contents");
}

TEST(Multipart, ValueContainingTheBoundaryTextButNotALine) {
  std::map<std::string, std::string> f;
  auto body = multipart_body("bnd", {{"body", "a --bnd b"}});
  EXPECT_EQ(parse_multipart("multipart/form-data; boundary=bnd", body, &f), "");
  EXPECT_EQ(f["body"], "a --bnd b");
}

TEST(Multipart, Errors) {
  std::map<std::string, std::string> f;
  EXPECT_NE(parse_multipart("multipart/form-data", "x", &f), "");  // no boundary
  EXPECT_NE(parse_multipart("multipart/form-data; boundary=", "x", &f), "");
  EXPECT_NE(parse_multipart("multipart/form-data; boundary=" + std::string(71, 'b'), "x", &f), "");
  EXPECT_NE(parse_multipart("multipart/form-data; boundary=b", "no delimiter here", &f), "");
  // Truncated: the last part has no closing boundary.
  auto open = multipart_body("b", {{"body", "x"}}, false);
  EXPECT_NE(parse_multipart("multipart/form-data; boundary=b", open.substr(0, open.size() - 2), &f), "");
  EXPECT_NE(parse_multipart("multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\nx", &f), "");
  // A part without a name.
  EXPECT_NE(parse_multipart("multipart/form-data; boundary=b",
                            "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n", &f), "");
  // A part without its blank line.
  EXPECT_NE(parse_multipart("multipart/form-data; boundary=b",
                            "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n--b--\r\n", &f), "");
}

// --- fields ---

TEST(Fields, StringPropertiesMapOneToOne) {
  EXPECT_EQ(field_ok("body", "hi").body, "hi");
  EXPECT_EQ(field_ok("app_id", "a").properties.app_id, "a");
  EXPECT_EQ(field_ok("content_encoding", "gzip").properties.content_encoding, "gzip");
  EXPECT_EQ(field_ok("content_type", "text/plain").properties.content_type, "text/plain");
  EXPECT_EQ(field_ok("correlation_id", "c1").properties.correlation_id, "c1");
  EXPECT_EQ(field_ok("message_id", "m1").properties.message_id, "m1");
  EXPECT_EQ(field_ok("reply_to", "q").properties.reply_to, "q");
  EXPECT_EQ(field_ok("type", "t").properties.type, "t");
  EXPECT_EQ(field_ok("user_id", "guest").properties.user_id, "guest");
}

TEST(Fields, BodyMayBeLongAndBinary) {
  std::string big(100000, '\0');
  EXPECT_EQ(field_ok("body", big).body, big);
}

TEST(Fields, ShortStringsOver255BytesAre400) {
  for (const char* key : {"app_id", "content_encoding", "content_type", "correlation_id",
                          "message_id", "reply_to", "type", "user_id"}) {
    EXPECT_TRUE(field_ok(key, std::string(255, 'x')).properties != amqp::Properties{}) << key;
    expect_bad(key, std::string(256, 'x'));
  }
}

TEST(Fields, CrOrLfInAPropertyIs400) {
  for (const char* key : {"app_id", "content_encoding", "content_type", "correlation_id",
                          "message_id", "reply_to", "type", "user_id"}) {
    expect_bad(key, "a\r\nX-Injected: 1");
    expect_bad(key, "a\nb");
    expect_bad(key, "a\rb");
  }
}

TEST(Fields, CrOrLfAnywhereInHeadersIs400) {
  expect_bad("headers", R"({"a": "x\r\nX-Injected: 1"})");
  expect_bad("headers", R"({"a\nb": "x"})");
  expect_bad("headers", R"({"a": {"b": ["ok", "x\ny"]}})");
  EXPECT_TRUE(field_ok("headers", R"({"a": "tab\tis fine", "n": 1})").properties.headers);
  core::Message m;
  auto e = apply_json_item(m, json::parse(R"({"headers": {"h": "a\r\nb"}})"));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, 400);
}

TEST(Fields, DeliveryMode) {
  EXPECT_EQ(field_ok("delivery_mode", "1").properties.delivery_mode, 1);
  EXPECT_EQ(field_ok("delivery_mode", "2").properties.delivery_mode, 2);
  for (const char* v : {"0", "3", "", "x", "2.0", " 2", "-1", "+2", "02x"}) expect_bad("delivery_mode", v);
}

TEST(Fields, Priority) {
  EXPECT_EQ(field_ok("priority", "0").properties.priority, 0);
  EXPECT_EQ(field_ok("priority", "9").properties.priority, 9);
  EXPECT_EQ(field_ok("priority", "255").properties.priority, 255);
  for (const char* v : {"256", "-1", "", "high", "1.5", "99999999999999999999"}) expect_bad("priority", v);
}

TEST(Fields, Timestamp) {
  EXPECT_EQ(field_ok("timestamp", "1364403057").properties.timestamp, 1364403057u);
  EXPECT_EQ(field_ok("timestamp", "0").properties.timestamp, 0u);
  for (const char* v : {"", "-1", "now", "1364403057.5", "2013-03-27", "99999999999999999999999"})
    expect_bad("timestamp", v);
}

TEST(Fields, ExpireAndExpirationAreTheAmqpExpiration) {
  EXPECT_EQ(field_ok("expire", "60000").properties.expiration, "60000");
  EXPECT_EQ(field_ok("expiration", "0").properties.expiration, "0");
  EXPECT_EQ(field_ok("expiration", "4294967295").properties.expiration, "4294967295");
  for (const char* key : {"expire", "expiration"})
    for (const char* v : {"", "-5", "1s", "1.5", "4294967296"}) expect_bad(key, v);
}

TEST(Fields, HeadersAreATypedJsonObject) {
  auto m = field_ok("headers", R"({"i": 1, "f": 1.5, "b": true, "s": "x", "o": {"n": [1, "a"]}, "l": [1, 2]})");
  ASSERT_TRUE(m.properties.headers);
  const json& h = *m.properties.headers;
  EXPECT_TRUE(h["i"].is_number_integer());
  EXPECT_TRUE(h["f"].is_number_float());
  EXPECT_TRUE(h["b"].is_boolean());
  EXPECT_EQ(h["s"], "x");
  EXPECT_EQ(h["o"]["n"], json::parse(R"([1, "a"])"));
  EXPECT_EQ(h["l"], json::parse("[1, 2]"));
  EXPECT_EQ(*field_ok("headers", "{}").properties.headers, json::object());
  for (const char* v : {"", "[1,2]", "\"s\"", "1", "null", "{bad json", "{\"a\":1} trailing"})
    expect_bad("headers", v);
}

TEST(Fields, Mandatory) {
  EXPECT_TRUE(field_ok("mandatory", "1").mandatory);
  EXPECT_TRUE(field_ok("mandatory", "true").mandatory);
  EXPECT_FALSE(field_ok("mandatory", "0").mandatory);
  EXPECT_FALSE(field_ok("mandatory", "false").mandatory);
  EXPECT_FALSE(field_ok("mandatory", "").mandatory);
  for (const char* v : {"2", "yes", "-1"}) expect_bad("mandatory", v);
}

TEST(Fields, UnknownFieldIs400NamingIt) {
  expect_bad("colour", "blue");
  expect_bad("routing_key", "k");  // the path carries it in a single publish
  expect_bad("Body", "x");         // names are case-sensitive
}

TEST(Fields, HyphenatedSpellingsOfTheFieldNames) {
  // statelessd's own curl example sends `content-type=text/plain`.
  EXPECT_EQ(field_ok("content-type", "text/plain").properties.content_type, "text/plain");
  EXPECT_EQ(field_ok("delivery-mode", "2").properties.delivery_mode, 2);
  expect_bad("delivery-mode", "7");
}

// --- batch items ---

TEST(BatchItem, FieldsFromJson) {
  core::Message m;
  auto item = json::parse(R"({"routing_key": "k", "body": "b", "delivery_mode": 2, "priority": 5,
      "mandatory": true, "headers": {"x": 1}, "timestamp": 1364403057, "expiration": "1000"})");
  ASSERT_FALSE(apply_json_item(m, item));
  EXPECT_EQ(m.routing_key, "k");
  EXPECT_EQ(m.body, "b");
  EXPECT_EQ(m.properties.delivery_mode, 2);
  EXPECT_EQ(m.properties.priority, 5);
  EXPECT_TRUE(m.mandatory);
  EXPECT_EQ(*m.properties.headers, json::parse(R"({"x": 1})"));
  EXPECT_EQ(m.properties.timestamp, 1364403057u);
  EXPECT_EQ(m.properties.expiration, "1000");
}

TEST(BatchItem, Errors) {
  auto bad = [](const char* text) {
    core::Message m;
    auto e = apply_json_item(m, json::parse(text));
    return e ? e->status : 0;
  };
  EXPECT_EQ(bad("[1]"), 400);
  EXPECT_EQ(bad(R"({"routing_key": 1})"), 400);
  EXPECT_EQ(bad(R"({"headers": [1]})"), 400);
  EXPECT_EQ(bad(R"({"body": {"nested": 1}})"), 400);
  EXPECT_EQ(bad(R"({"priority": 300})"), 400);
  EXPECT_EQ(bad(R"({"delivery_mode": 1.5})"), 400);
  EXPECT_EQ(bad(R"({"nope": 1})"), 400);
}

// --- batch bodies ---

using Messages = std::vector<core::Message>;

// The messages of a batch, or the error's status and detail as "400 detail".
std::variant<Messages, std::string> batch(std::string_view type, std::string_view body) {
  auto r = batch_messages("ex", type, body);
  if (auto* e = std::get_if<HttpError>(&r)) return std::to_string(e->status) + " " + e->detail;
  return std::get<Messages>(std::move(r));
}

TEST(Batch, NdjsonWithBlankLines) {
  auto r = batch("application/x-ndjson", "{\"body\": \"a\"}\n\n  \r\n{\"body\": \"b\"}\r\n");
  ASSERT_TRUE(std::holds_alternative<Messages>(r));
  auto& messages = std::get<Messages>(r);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].body, "a");
  EXPECT_EQ(messages[1].body, "b");
  EXPECT_EQ(messages[1].exchange, "ex");
}

TEST(Batch, NdjsonBadLineIsNamed) {
  auto r = batch("application/x-ndjson; charset=utf-8", "{\"body\": \"a\"}\n\n{oops\n");
  ASSERT_TRUE(std::holds_alternative<std::string>(r));
  EXPECT_EQ(std::get<std::string>(r).rfind("400 line 3 ", 0), 0u) << std::get<std::string>(r);
}

// A line that is not JSON is the error even behind a bad message: nothing is judged before
// every line is known to be JSON.
TEST(Batch, NdjsonALineThatIsNotJsonComesBeforeABadMessage) {
  auto r = batch("application/x-ndjson", "{\"priority\": 300}\n{\"body\": \"b\"}\n{\"body\": \n");
  ASSERT_TRUE(std::holds_alternative<std::string>(r));
  EXPECT_EQ(std::get<std::string>(r).rfind("400 line 3 ", 0), 0u) << std::get<std::string>(r);
}

// Each line is read without building it as a json value when it is a plain object, and the
// general way otherwise: both give the message the same fields, and the same first error, as
// the same items in a JSON array (read the general way only).
TEST(Batch, NdjsonLinesReadAsTheSameItemsInAnArray) {
  const std::vector<std::string> items = {
      R"({"routing_key": "rk", "body": "b", "delivery_mode": 2, "priority": 7, "mandatory": true})",
      R"({"body": "x", "app_id": "a", "timestamp": 1700000000, "expiration": 60000, "type": "t"})",
      R"({"body": "x", "headers": {"h": 1, "n": {"deep": [1, 2]}}, "content-type": "text/plain"})",
      R"({"body": "first", "body": "second"})",
      R"({"mandatory": false, "body": ""})",
      R"({})",
      R"({"priority": "x", "priority": 1})",  // the last one counts, as in a json value
  };
  const std::vector<std::string> bad = {
      R"({"priority": 300})",           R"({"routing_key": 5})",
      R"({"body": null})",              R"({"body": 1.5})",
      R"({"body": ["a"]})",             R"({"headers": "h"})",
      R"({"priority": 1, "priority": "x"})",
      R"("just a string")",             R"([1, 2])",
      R"({"nope": 1})",                 R"({"app_id": "a\r\nb"})",
      R"({"b": 1, "a": "x", "priority": 256, "delivery_mode": 9})",
      "{\"routing_key\": \"" + std::string(256, 'k') + "\"}",
  };
  auto same = [](const std::string& line) {
    auto as_line = batch("application/x-ndjson", line + "\n");
    auto as_array = batch("application/json", "[" + line + "]");
    ASSERT_EQ(as_line.index(), as_array.index()) << line;
    if (auto* e = std::get_if<std::string>(&as_line)) {
      EXPECT_EQ(*e, std::get<std::string>(as_array)) << line;
      return;
    }
    const auto& a = std::get<Messages>(as_line)[0];
    const auto& b = std::get<Messages>(as_array)[0];
    EXPECT_EQ(a.routing_key, b.routing_key) << line;
    EXPECT_EQ(a.body, b.body) << line;
    EXPECT_EQ(a.mandatory, b.mandatory) << line;
    EXPECT_TRUE(a.properties == b.properties) << line;
  };
  for (const auto& line : items) same(line);
  for (const auto& line : bad) {
    same(line);
    EXPECT_TRUE(std::holds_alternative<std::string>(batch("application/x-ndjson", line))) << line;
  }
  // nlohmann ends a text at a NUL byte: neither way drops what follows it unread (batch_fuzz)
  const std::string nul("{\"body\": \"a\"}\0{\"body\": \"b\"}", 27);
  EXPECT_EQ(std::get<std::string>(batch("application/x-ndjson", nul)).rfind("400 line 1 ", 0), 0u);
  auto r = batch("application/x-ndjson", items[0] + "\n" + items[3]);
  ASSERT_TRUE(std::holds_alternative<Messages>(r));
  EXPECT_EQ(std::get<Messages>(r)[1].body, "second");
}

TEST(Batch, MediaTypesIgnoreCase) {
  EXPECT_TRUE(std::holds_alternative<Messages>(batch("Application/JSON", "[{}]")));
  EXPECT_TRUE(std::holds_alternative<Messages>(batch("application/X-NDJSON", "{}")));
  // a type that merely starts like one is not it
  EXPECT_EQ(std::get<std::string>(batch("application/jsonx", "[{}]")).substr(0, 3), "415");
}

TEST(Batch, JsonArray) {
  auto r = batch("application/json", R"([{"body": "a"}, {"body": "b"}, {"body": "c"}])");
  ASSERT_TRUE(std::holds_alternative<Messages>(r));
  EXPECT_EQ(std::get<Messages>(r).size(), 3u);
}

TEST(Batch, Errors) {
  auto status = [](std::string_view ct, std::string_view body) {
    auto r = batch_messages("ex", ct, body);
    auto* e = std::get_if<HttpError>(&r);
    return e ? e->status : 0;
  };
  EXPECT_EQ(status("application/json", R"({"body": "not an array"})"), 400);
  EXPECT_EQ(status("application/json", "[1,"), 400);
  EXPECT_EQ(status("application/json", "[]"), 400);
  EXPECT_EQ(status("application/x-ndjson", ""), 400);
  EXPECT_EQ(status("application/x-ndjson", "\n\n"), 400);
  EXPECT_EQ(status("text/plain", "[]"), 415);
  EXPECT_EQ(status("application/x-www-form-urlencoded", "body=x"), 415);
  EXPECT_EQ(status("", "[]"), 415);
}

TEST(Batch, MessagesAreAllCheckedAndTheBadOneIsNamed) {
  auto ok = batch_messages("ex", "application/json",
                           R"([{"routing_key": "a", "body": "1"}, {"routing_key": "b", "body": "2"}])");
  ASSERT_TRUE((std::holds_alternative<std::vector<core::Message>>(ok)));
  auto& messages = std::get<std::vector<core::Message>>(ok);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[1].exchange, "ex");
  EXPECT_EQ(messages[1].routing_key, "b");
  EXPECT_EQ(messages[1].body, "2");
  auto bad = batch_messages("ex", "application/json", R"([{"body": "1"}, {"priority": 300}])");
  auto* e = std::get_if<HttpError>(&bad);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->status, 400);
  EXPECT_EQ(e->detail.rfind("message 1: priority", 0), 0u) << e->detail;
}

}  // namespace
}  // namespace warren
