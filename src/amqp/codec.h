// AMQP 0-9-1 codec glue: librabbitmq is used only to encode and decode frames, never to touch a
// socket (its socket layer blocks). Owns message properties, typed header tables and framing.
#pragma once

#include <amqp.h>
#include <amqp_framing.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "handles.h"

namespace warren::amqp {

// The 8 bytes a client sends first: "AMQP" 0 0 9 1.
inline constexpr std::string_view kProtocolHeader{"AMQP\x00\x00\x09\x01", 8};
// Frame header (type, channel, size) and the end octet around every frame payload.
inline constexpr size_t kFrameOverhead = 8;
inline constexpr size_t kDefaultFrameMax = 131072;
// What a connection.start may be before tune: librabbitmq's initial frame limit.
inline constexpr size_t kInitialFrameMax = 65536;

// basic.* content properties, owning their data (amqp_basic_properties_t points into pools).
struct Properties {
  std::optional<std::string> content_type;
  std::optional<std::string> content_encoding;
  std::optional<nlohmann::json> headers;  // a JSON object; typed on the wire (see json_to_table)
  std::optional<uint8_t> delivery_mode;
  std::optional<uint8_t> priority;
  std::optional<std::string> correlation_id;
  std::optional<std::string> reply_to;
  std::optional<std::string> expiration;
  std::optional<std::string> message_id;
  std::optional<uint64_t> timestamp;
  std::optional<std::string> type;
  std::optional<std::string> user_id;
  std::optional<std::string> app_id;

  bool operator==(const Properties&) const = default;
};

// JSON -> AMQP field table. string→'S', integer→'l' (int64), unsigned above INT64_MAX→error,
// float→'d', bool→'t', null→'V', array→'A', object→'F', binary→'x'. Memory comes from `pool`,
// which must outlive `out`. `what` names the offending key on error.
[[nodiscard]] bool json_to_table(const nlohmann::json& object, amqp_pool_t* pool, amqp_table_t* out,
                                 std::string* error);
// Every AMQP field kind back to JSON (decimal→number, timestamp→integer, bytes→string).
nlohmann::json table_to_json(const amqp_table_t& table);
nlohmann::json field_to_json(const amqp_field_value_t& value);

// Properties -> librabbitmq struct; strings and tables are copied into `pool`.
[[nodiscard]] bool properties_to_amqp(const Properties& in, amqp_pool_t* pool,
                                      amqp_basic_properties_t* out, std::string* error);
Properties properties_from_amqp(const amqp_basic_properties_t& in);

inline amqp_bytes_t amqp_view(std::string_view s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}
inline std::string amqp_string(amqp_bytes_t b) {
  return b.len ? std::string(static_cast<const char*>(b.bytes), b.len) : std::string();
}

// Frame builders: each appends complete frames to `out`. They return false (with *error) when
// the method does not fit in one frame of frame_max bytes or librabbitmq refuses to encode it.
[[nodiscard]] bool encode_method(std::string& out, uint16_t channel, amqp_method_number_t id,
                                 void* decoded, size_t frame_max, std::string* error);
// A content header frame then body frames, each at most frame_max bytes on the wire.
[[nodiscard]] bool encode_content(std::string& out, uint16_t channel,
                                  const amqp_basic_properties_t& properties, std::string_view body,
                                  size_t frame_max, std::string* error);
void encode_heartbeat(std::string& out);

// The receive side: librabbitmq's frame parser on a connection state that never gets a socket.
class Decoder {
 public:
  Decoder();
  // Consumes bytes from `data` (at most one frame's worth); returns how many, or a negative
  // librabbitmq status. frame->frame_type is 0 until a whole frame was read. The decoded
  // frame points into the decoder's pools: valid until release(frame->channel) / next feed.
  int feed(const void* data, size_t len, amqp_frame_t* frame);
  // After connection.tune: the negotiated frame_max bounds every later frame.
  [[nodiscard]] bool tune(int channel_max, size_t frame_max);
  // Recycles the memory of frames already handled on `channel`.
  void release(uint16_t channel);

 private:
  AmqpStatePtr state_;
};

// The synchronous reply a method expects (exchange.declare → declare-ok, ...); 0 if none.
amqp_method_number_t expected_reply(amqp_method_number_t id);
std::string method_name(amqp_method_number_t id);

}  // namespace warren::amqp
