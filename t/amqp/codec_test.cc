// The codec without a broker: typed tables, properties, frames split at frame_max, decoding.
#include "amqp/codec.h"

#include <gtest/gtest.h>

#include <vector>

namespace warren::amqp {
namespace {

using nlohmann::json;

// Encodes a table to wire bytes and decodes it again, as a broker round trip would.
json wire_round_trip(const json& in, std::vector<char>* kinds = nullptr) {
  auto pool = make_amqp_pool();
  amqp_table_t table;
  std::string error;
  EXPECT_TRUE(json_to_table(in, pool.get(), &table, &error)) << error;
  if (kinds)
    for (int i = 0; i < table.num_entries; ++i) kinds->push_back(static_cast<char>(table.entries[i].value.kind));
  std::vector<char> buf(65536);
  size_t offset = 0;
  EXPECT_EQ(amqp_encode_table(amqp_bytes_t{buf.size(), buf.data()}, &table, &offset), AMQP_STATUS_OK);
  amqp_table_t decoded;
  size_t read = 0;
  EXPECT_EQ(amqp_decode_table(amqp_bytes_t{offset, buf.data()}, pool.get(), &decoded, &read),
            AMQP_STATUS_OK);
  EXPECT_EQ(read, offset);
  return table_to_json(decoded);
}

TEST(AmqpCodec, TableTypesRoundTrip) {
  json in = {{"s", "text"},
             {"i", -42},
             {"big", 9007199254740993LL},
             {"u", 7u},
             {"f", 1.5},
             {"t", true},
             {"n", nullptr},
             {"a", {1, "two", false, {{"x", 1}}}},
             {"o", {{"nested", {{"deep", "yes"}}}}}};
  std::vector<char> kinds;
  json out = wire_round_trip(in, &kinds);
  EXPECT_EQ(out, in);
  // nlohmann keeps keys sorted: a, big, f, i, n, o, s, t, u
  EXPECT_EQ(std::string(kinds.begin(), kinds.end()), "AldlVFStl");
}

TEST(AmqpCodec, UnsignedTooLargeIsAnError) {
  auto pool = make_amqp_pool();
  amqp_table_t table;
  std::string error;
  EXPECT_FALSE(json_to_table({{"x", {{"y", 18446744073709551615ULL}}}}, pool.get(), &table, &error));
  EXPECT_NE(error.find("x.y"), std::string::npos) << error;
  EXPECT_FALSE(json_to_table(json::array(), pool.get(), &table, &error));
}

TEST(AmqpCodec, EveryFieldKindDecodes) {
  amqp_field_value_t v;
  v.kind = AMQP_FIELD_KIND_I8, v.value.i8 = -3;
  EXPECT_EQ(field_to_json(v), -3);
  v.kind = AMQP_FIELD_KIND_U8, v.value.u8 = 250;
  EXPECT_EQ(field_to_json(v), 250);
  v.kind = AMQP_FIELD_KIND_I16, v.value.i16 = -300;
  EXPECT_EQ(field_to_json(v), -300);
  v.kind = AMQP_FIELD_KIND_U16, v.value.u16 = 60000;
  EXPECT_EQ(field_to_json(v), 60000);
  v.kind = AMQP_FIELD_KIND_I32, v.value.i32 = -70000;
  EXPECT_EQ(field_to_json(v), -70000);
  v.kind = AMQP_FIELD_KIND_U32, v.value.u32 = 4000000000u;
  EXPECT_EQ(field_to_json(v), 4000000000u);
  v.kind = AMQP_FIELD_KIND_U64, v.value.u64 = 18446744073709551615ULL;
  EXPECT_EQ(field_to_json(v), 18446744073709551615ULL);
  v.kind = AMQP_FIELD_KIND_TIMESTAMP, v.value.u64 = 1700000000;
  EXPECT_EQ(field_to_json(v), 1700000000);
  v.kind = AMQP_FIELD_KIND_F32, v.value.f32 = 0.5f;
  EXPECT_EQ(field_to_json(v), 0.5);
  v.kind = AMQP_FIELD_KIND_DECIMAL, v.value.decimal = {2, 12345};
  EXPECT_DOUBLE_EQ(field_to_json(v).get<double>(), 123.45);
  char raw[] = "\x01\x02";
  v.kind = AMQP_FIELD_KIND_BYTES, v.value.bytes = {2, raw};
  EXPECT_EQ(field_to_json(v), std::string("\x01\x02"));
  v.kind = AMQP_FIELD_KIND_VOID;
  EXPECT_TRUE(field_to_json(v).is_null());
}

Properties full_properties() {
  Properties p;
  p.content_type = "application/json";
  p.content_encoding = "gzip";
  p.headers = json{{"x-http-method", "PUT"}, {"n", 3}, {"ok", true}};
  p.delivery_mode = 2;
  p.priority = 7;
  p.correlation_id = "corr";
  p.reply_to = "reply_q";
  p.expiration = "60000";
  p.message_id = "m1";
  p.timestamp = 1700000000;
  p.type = "t";
  p.user_id = "guest";
  p.app_id = "warren";
  return p;
}

// Feeds bytes to a Decoder and collects the frames, copying what each points to.
struct Frames {
  std::vector<uint8_t> types;
  std::vector<size_t> wire_sizes;
  std::vector<amqp_method_number_t> methods;
  std::vector<Properties> properties;
  std::vector<uint64_t> body_sizes;
  std::string body;
  std::vector<json> queue_arguments;
};

Frames decode_all(const std::string& bytes, size_t step = 1 << 20) {
  Decoder d;
  Frames f;
  size_t off = 0, frame_start = 0;
  for (int guard = 0; off < bytes.size() && guard < 1000000; ++guard) {
    amqp_frame_t frame;
    size_t len = std::min(step, bytes.size() - off);
    int n = d.feed(bytes.data() + off, len, &frame);
    EXPECT_GT(n, 0);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
    if (frame.frame_type == 0) continue;
    f.types.push_back(frame.frame_type);
    f.wire_sizes.push_back(off - frame_start);
    frame_start = off;
    if (frame.frame_type == AMQP_FRAME_METHOD) {
      f.methods.push_back(frame.payload.method.id);
      if (frame.payload.method.id == AMQP_QUEUE_DECLARE_METHOD)
        f.queue_arguments.push_back(table_to_json(
            static_cast<amqp_queue_declare_t*>(frame.payload.method.decoded)->arguments));
    } else if (frame.frame_type == AMQP_FRAME_HEADER) {
      f.body_sizes.push_back(frame.payload.properties.body_size);
      f.properties.push_back(properties_from_amqp(
          *static_cast<amqp_basic_properties_t*>(frame.payload.properties.decoded)));
    } else if (frame.frame_type == AMQP_FRAME_BODY) {
      f.body.append(static_cast<char*>(frame.payload.body_fragment.bytes),
                    frame.payload.body_fragment.len);
    }
    d.release(frame.channel);
  }
  return f;
}

TEST(AmqpCodec, PublishFramesSplitAtFrameMax) {
  const size_t frame_max = 4096;
  std::string body(10000, 'x');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
  Properties props = full_properties();
  auto pool = make_amqp_pool();
  amqp_basic_properties_t raw;
  std::string error, out;
  ASSERT_TRUE(properties_to_amqp(props, pool.get(), &raw, &error)) << error;
  amqp_basic_publish_t m{};
  m.exchange = amqp_cstring_bytes("ex");
  m.routing_key = amqp_cstring_bytes("rk");
  ASSERT_TRUE(encode_method(out, 5, AMQP_BASIC_PUBLISH_METHOD, &m, frame_max, &error)) << error;
  ASSERT_TRUE(encode_content(out, 5, raw, body, frame_max, &error)) << error;

  for (size_t step : {size_t{1}, size_t{7}, size_t{1} << 20}) {
    Frames f = decode_all(out, step);
    ASSERT_EQ(f.types, (std::vector<uint8_t>{1, 2, 3, 3, 3})) << "step " << step;
    for (size_t s : f.wire_sizes) EXPECT_LE(s, frame_max);
    EXPECT_EQ(f.wire_sizes[2], frame_max);
    EXPECT_EQ(f.methods[0], AMQP_BASIC_PUBLISH_METHOD);
    EXPECT_EQ(f.body_sizes[0], body.size());
    EXPECT_EQ(f.properties[0], props);
    EXPECT_EQ(f.body, body);
  }
}

TEST(AmqpCodec, EmptyBodyHasNoBodyFrame) {
  std::string out, error;
  amqp_basic_properties_t raw{};
  ASSERT_TRUE(encode_content(out, 1, raw, "", kDefaultFrameMax, &error));
  Frames f = decode_all(out);
  EXPECT_EQ(f.types, (std::vector<uint8_t>{2}));
  EXPECT_EQ(f.properties[0], Properties());
}

TEST(AmqpCodec, MethodWithTableArguments) {
  auto pool = make_amqp_pool();
  amqp_queue_declare_t q{};
  q.queue = amqp_cstring_bytes("q1");
  json args = {{"x-queue-type", "quorum"}, {"x-max-length", 10}};
  std::string error, out;
  ASSERT_TRUE(json_to_table(args, pool.get(), &q.arguments, &error));
  ASSERT_TRUE(encode_method(out, 1, AMQP_QUEUE_DECLARE_METHOD, &q, kDefaultFrameMax, &error));
  Frames f = decode_all(out);
  ASSERT_EQ(f.queue_arguments.size(), 1u);
  EXPECT_EQ(f.queue_arguments[0], args);
}

TEST(AmqpCodec, MethodTooLargeForFrameFails) {
  auto pool = make_amqp_pool();
  amqp_queue_declare_t q{};
  q.queue = amqp_cstring_bytes("q1");
  std::string error, out;
  ASSERT_TRUE(json_to_table({{"big", std::string(5000, 'y')}}, pool.get(), &q.arguments, &error));
  EXPECT_FALSE(encode_method(out, 1, AMQP_QUEUE_DECLARE_METHOD, &q, 4096, &error));
  EXPECT_TRUE(out.empty());
}

TEST(AmqpCodec, HeartbeatAndProtocolHeader) {
  std::string hb;
  encode_heartbeat(hb);
  EXPECT_EQ(hb, std::string("\x08\x00\x00\x00\x00\x00\x00\xce", 8));
  EXPECT_EQ(kProtocolHeader.size(), 8u);
  EXPECT_EQ(kProtocolHeader.substr(0, 4), "AMQP");
  Frames f = decode_all(hb + hb);
  EXPECT_EQ(f.types, (std::vector<uint8_t>{8, 8}));
}

TEST(AmqpCodec, PropertiesRejectLongStrings) {
  Properties p;
  p.message_id = std::string(256, 'm');
  auto pool = make_amqp_pool();
  amqp_basic_properties_t raw;
  std::string error;
  EXPECT_FALSE(properties_to_amqp(p, pool.get(), &raw, &error));
  EXPECT_NE(error.find("message_id"), std::string::npos);
}

TEST(AmqpCodec, ExpectedReplies) {
  EXPECT_EQ(expected_reply(AMQP_EXCHANGE_UNBIND_METHOD), AMQP_EXCHANGE_UNBIND_OK_METHOD);
  EXPECT_EQ(expected_reply(AMQP_QUEUE_DECLARE_METHOD), AMQP_QUEUE_DECLARE_OK_METHOD);
  EXPECT_EQ(expected_reply(AMQP_BASIC_PUBLISH_METHOD), 0u);
  EXPECT_EQ(method_name(AMQP_BASIC_ACK_METHOD), "AMQP_BASIC_ACK_METHOD");
}

}  // namespace
}  // namespace warren::amqp
