#include "amqp/codec.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace warren::amqp {
namespace {

// Nesting beyond this is refused: the broker would never need it and recursion stays bounded.
constexpr int kMaxDepth = 32;

// Big-endian, as AMQP's wire is; one append per value (a frame's head is written for every
// message published).
template <typename T>
void put_big_endian(std::string& out, T v) {
  char bytes[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); ++i) bytes[i] = static_cast<char>(v >> (8 * (sizeof(T) - 1 - i)));
  out.append(bytes, sizeof bytes);
}
void put8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
void put16(std::string& out, uint16_t v) { put_big_endian(out, v); }
void put32(std::string& out, uint32_t v) { put_big_endian(out, v); }
void put64(std::string& out, uint64_t v) { put_big_endian(out, v); }

// librabbitmq encodes into a caller's buffer: one per thread, grown to the largest frame seen,
// so a publish does not allocate (and clear) frame_max bytes twice.
amqp_bytes_t scratch(size_t size) {
  thread_local std::vector<char> buf;
  if (buf.size() < size) buf.resize(size);
  return amqp_bytes_t{size, buf.data()};
}

amqp_bytes_t pool_copy(amqp_pool_t* pool, std::string_view s) {
  amqp_bytes_t b{0, nullptr};
  if (s.empty()) return b;
  amqp_pool_alloc_bytes(pool, s.size(), &b);
  if (!b.bytes) abort();  // out of memory
  std::memcpy(b.bytes, s.data(), s.size());
  return b;
}

template <typename T>
T* pool_array(amqp_pool_t* pool, size_t n) {
  if (n == 0) return nullptr;
  void* p = amqp_pool_alloc(pool, n * sizeof(T));
  if (!p) abort();  // out of memory
  return static_cast<T*>(p);
}

bool json_to_field(const nlohmann::json& v, amqp_pool_t* pool, amqp_field_value_t* out,
                   const std::string& where, int depth, std::string* error);

bool json_to_table_at(const nlohmann::json& object, amqp_pool_t* pool, amqp_table_t* out,
                      const std::string& where, int depth, std::string* error) {
  if (!object.is_object()) {
    *error = fmt::format("{}: not a JSON object", where.empty() ? "table" : where);
    return false;
  }
  if (depth > kMaxDepth) {
    *error = fmt::format("{}: nested too deeply", where);
    return false;
  }
  out->num_entries = static_cast<int>(object.size());
  out->entries = pool_array<amqp_table_entry_t>(pool, object.size());
  int i = 0;
  for (const auto& [key, value] : object.items()) {
    if (key.size() > 255) {
      *error = fmt::format("{}: key longer than 255 bytes", key.substr(0, 32));
      return false;
    }
    std::string path = where.empty() ? key : where + "." + key;
    amqp_table_entry_t& e = out->entries[i++];
    e.key = pool_copy(pool, key);
    if (!json_to_field(value, pool, &e.value, path, depth + 1, error)) return false;
  }
  return true;
}

bool json_to_array_at(const nlohmann::json& array, amqp_pool_t* pool, amqp_array_t* out,
                      const std::string& where, int depth, std::string* error) {
  if (depth > kMaxDepth) {
    *error = fmt::format("{}: nested too deeply", where);
    return false;
  }
  out->num_entries = static_cast<int>(array.size());
  out->entries = pool_array<amqp_field_value_t>(pool, array.size());
  for (size_t i = 0; i < array.size(); ++i)
    if (!json_to_field(array[i], pool, &out->entries[i], fmt::format("{}[{}]", where, i),
                       depth + 1, error))
      return false;
  return true;
}

// JSON integers travel as signed 64-bit fields: one above INT64_MAX is refused, not wrapped.
bool unsigned_to_field(uint64_t u, amqp_field_value_t* out, const std::string& where,
                       std::string* error) {
  if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    *error = fmt::format("{}: integer {} does not fit a signed 64-bit field", where, u);
    return false;
  }
  out->kind = AMQP_FIELD_KIND_I64;
  out->value.i64 = static_cast<int64_t>(u);
  return true;
}

bool json_to_field(const nlohmann::json& v, amqp_pool_t* pool, amqp_field_value_t* out,
                   const std::string& where, int depth, std::string* error) {
  using T = nlohmann::json::value_t;
  switch (v.type()) {
    case T::string:
      out->kind = AMQP_FIELD_KIND_UTF8;
      out->value.bytes = pool_copy(pool, v.get_ref<const std::string&>());
      return true;
    case T::number_integer:
      out->kind = AMQP_FIELD_KIND_I64;
      out->value.i64 = v.get<int64_t>();
      return true;
    case T::number_unsigned:
      return unsigned_to_field(v.get<uint64_t>(), out, where, error);
    case T::number_float:
      out->kind = AMQP_FIELD_KIND_F64;
      out->value.f64 = v.get<double>();
      return true;
    case T::boolean:
      out->kind = AMQP_FIELD_KIND_BOOLEAN;
      out->value.boolean = v.get<bool>() ? 1 : 0;
      return true;
    case T::null:
      out->kind = AMQP_FIELD_KIND_VOID;
      return true;
    case T::binary: {
      const auto& bin = v.get_binary();
      out->kind = AMQP_FIELD_KIND_BYTES;
      out->value.bytes = pool_copy(
          pool, std::string_view(reinterpret_cast<const char*>(bin.data()), bin.size()));
      return true;
    }
    case T::array:
      out->kind = AMQP_FIELD_KIND_ARRAY;
      return json_to_array_at(v, pool, &out->value.array, where, depth, error);
    case T::object:
      out->kind = AMQP_FIELD_KIND_TABLE;
      return json_to_table_at(v, pool, &out->value.table, where, depth, error);
    case T::discarded:
      break;
  }
  *error = fmt::format("{}: unsupported JSON value", where);
  return false;
}

}  // namespace

bool json_to_table(const nlohmann::json& object, amqp_pool_t* pool, amqp_table_t* out,
                   std::string* error) {
  *out = amqp_empty_table;
  return json_to_table_at(object, pool, out, "", 0, error);
}

nlohmann::json field_to_json(const amqp_field_value_t& v) {
  switch (v.kind) {
    case AMQP_FIELD_KIND_BOOLEAN: return v.value.boolean != 0;
    case AMQP_FIELD_KIND_I8: return v.value.i8;
    case AMQP_FIELD_KIND_U8: return v.value.u8;
    case AMQP_FIELD_KIND_I16: return v.value.i16;
    case AMQP_FIELD_KIND_U16: return v.value.u16;
    case AMQP_FIELD_KIND_I32: return v.value.i32;
    case AMQP_FIELD_KIND_U32: return v.value.u32;
    case AMQP_FIELD_KIND_I64: return v.value.i64;
    case AMQP_FIELD_KIND_U64: return v.value.u64;
    case AMQP_FIELD_KIND_TIMESTAMP: return v.value.u64;
    case AMQP_FIELD_KIND_F32: return static_cast<double>(v.value.f32);
    case AMQP_FIELD_KIND_F64: return v.value.f64;
    case AMQP_FIELD_KIND_DECIMAL:
      return static_cast<double>(v.value.decimal.value) / std::pow(10.0, v.value.decimal.decimals);
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES: return amqp_string(v.value.bytes);
    case AMQP_FIELD_KIND_ARRAY: {
      auto a = nlohmann::json::array();
      for (int i = 0; i < v.value.array.num_entries; ++i)
        a.push_back(field_to_json(v.value.array.entries[i]));
      return a;
    }
    case AMQP_FIELD_KIND_TABLE: return table_to_json(v.value.table);
    case AMQP_FIELD_KIND_VOID:
    default: return nullptr;
  }
}

nlohmann::json table_to_json(const amqp_table_t& table) {
  auto o = nlohmann::json::object();
  for (int i = 0; i < table.num_entries; ++i)
    o[amqp_string(table.entries[i].key)] = field_to_json(table.entries[i].value);
  return o;
}

bool properties_to_amqp(const Properties& in, amqp_pool_t* pool, amqp_basic_properties_t* out,
                        std::string* error) {
  std::memset(out, 0, sizeof(*out));
  auto str = [&](const std::optional<std::string>& s, amqp_bytes_t* field, amqp_flags_t flag,
                 const char* name) {
    if (!s) return true;
    if (s->size() > 255) {
      *error = fmt::format("{}: longer than 255 bytes", name);
      return false;
    }
    *field = pool_copy(pool, *s);
    out->_flags |= flag;
    return true;
  };
  if (!str(in.content_type, &out->content_type, AMQP_BASIC_CONTENT_TYPE_FLAG, "content_type") ||
      !str(in.content_encoding, &out->content_encoding, AMQP_BASIC_CONTENT_ENCODING_FLAG,
           "content_encoding") ||
      !str(in.correlation_id, &out->correlation_id, AMQP_BASIC_CORRELATION_ID_FLAG,
           "correlation_id") ||
      !str(in.reply_to, &out->reply_to, AMQP_BASIC_REPLY_TO_FLAG, "reply_to") ||
      !str(in.expiration, &out->expiration, AMQP_BASIC_EXPIRATION_FLAG, "expiration") ||
      !str(in.message_id, &out->message_id, AMQP_BASIC_MESSAGE_ID_FLAG, "message_id") ||
      !str(in.type, &out->type, AMQP_BASIC_TYPE_FLAG, "type") ||
      !str(in.user_id, &out->user_id, AMQP_BASIC_USER_ID_FLAG, "user_id") ||
      !str(in.app_id, &out->app_id, AMQP_BASIC_APP_ID_FLAG, "app_id"))
    return false;
  if (in.headers) {
    std::string why;
    if (!json_to_table(*in.headers, pool, &out->headers, &why)) {
      *error = "headers: " + why;
      return false;
    }
    out->_flags |= AMQP_BASIC_HEADERS_FLAG;
  }
  if (in.delivery_mode) {
    out->delivery_mode = *in.delivery_mode;
    out->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
  }
  if (in.priority) {
    out->priority = *in.priority;
    out->_flags |= AMQP_BASIC_PRIORITY_FLAG;
  }
  if (in.timestamp) {
    out->timestamp = *in.timestamp;
    out->_flags |= AMQP_BASIC_TIMESTAMP_FLAG;
  }
  return true;
}

Properties properties_from_amqp(const amqp_basic_properties_t& in) {
  Properties p;
  auto str = [&](amqp_bytes_t b, amqp_flags_t flag, std::optional<std::string>* field) {
    if (in._flags & flag) *field = amqp_string(b);
  };
  str(in.content_type, AMQP_BASIC_CONTENT_TYPE_FLAG, &p.content_type);
  str(in.content_encoding, AMQP_BASIC_CONTENT_ENCODING_FLAG, &p.content_encoding);
  str(in.correlation_id, AMQP_BASIC_CORRELATION_ID_FLAG, &p.correlation_id);
  str(in.reply_to, AMQP_BASIC_REPLY_TO_FLAG, &p.reply_to);
  str(in.expiration, AMQP_BASIC_EXPIRATION_FLAG, &p.expiration);
  str(in.message_id, AMQP_BASIC_MESSAGE_ID_FLAG, &p.message_id);
  str(in.type, AMQP_BASIC_TYPE_FLAG, &p.type);
  str(in.user_id, AMQP_BASIC_USER_ID_FLAG, &p.user_id);
  str(in.app_id, AMQP_BASIC_APP_ID_FLAG, &p.app_id);
  if (in._flags & AMQP_BASIC_HEADERS_FLAG) p.headers = table_to_json(in.headers);
  if (in._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) p.delivery_mode = in.delivery_mode;
  if (in._flags & AMQP_BASIC_PRIORITY_FLAG) p.priority = in.priority;
  if (in._flags & AMQP_BASIC_TIMESTAMP_FLAG) p.timestamp = in.timestamp;
  return p;
}

bool encode_method(std::string& out, uint16_t channel, amqp_method_number_t id, void* decoded,
                   size_t frame_max, std::string* error) {
  // method frame payload: class+method id (4 bytes) then the arguments
  amqp_bytes_t buf = scratch(frame_max - kFrameOverhead - 4);
  int n = amqp_encode_method(id, decoded, buf);
  if (n < 0) {
    *error = fmt::format("cannot encode {}: {}", method_name(id), amqp_error_string2(n));
    return false;
  }
  put8(out, AMQP_FRAME_METHOD);
  put16(out, channel);
  put32(out, static_cast<uint32_t>(n) + 4);
  put32(out, id);
  out.append(static_cast<const char*>(buf.bytes), static_cast<size_t>(n));
  put8(out, AMQP_FRAME_END);
  return true;
}

bool encode_content(std::string& out, uint16_t channel, const amqp_basic_properties_t& properties,
                    std::string_view body, size_t frame_max, std::string* error) {
  // header payload: class id, weight (0), body size (8 bytes), then flags and properties
  amqp_bytes_t buf = scratch(frame_max - kFrameOverhead - 12);
  int n = amqp_encode_properties(AMQP_BASIC_CLASS, const_cast<amqp_basic_properties_t*>(&properties),
                                 buf);
  if (n < 0) {
    *error = fmt::format("cannot encode message properties: {}", amqp_error_string2(n));
    return false;
  }
  size_t chunk = frame_max - kFrameOverhead;
  out.reserve(out.size() + 24 + static_cast<size_t>(n) + body.size() +
              (body.size() / chunk + 1) * kFrameOverhead);
  put8(out, AMQP_FRAME_HEADER);
  put16(out, channel);
  put32(out, static_cast<uint32_t>(n) + 12);
  put16(out, AMQP_BASIC_CLASS);
  put16(out, 0);
  put64(out, body.size());
  out.append(static_cast<const char*>(buf.bytes), static_cast<size_t>(n));
  put8(out, AMQP_FRAME_END);
  for (size_t off = 0; off < body.size(); off += chunk) {
    size_t len = std::min(chunk, body.size() - off);
    put8(out, AMQP_FRAME_BODY);
    put16(out, channel);
    put32(out, static_cast<uint32_t>(len));
    out.append(body.substr(off, len));
    put8(out, AMQP_FRAME_END);
  }
  return true;
}

void encode_heartbeat(std::string& out) {
  put8(out, AMQP_FRAME_HEARTBEAT);
  put16(out, 0);
  put32(out, 0);
  put8(out, AMQP_FRAME_END);
}

Decoder::Decoder() : state_(amqp_new_connection()) {
  if (!state_) abort();  // out of memory
  // A fresh librabbitmq state parses its first frame through a path that keeps only 7 of the
  // 8 bytes it read (the 8th, e.g. a heartbeat's end octet, is lost). Feeding it a protocol
  // header first moves it to the ordinary between-frames state, where frames parse whole.
  amqp_frame_t frame;
  if (feed(kProtocolHeader.data(), kProtocolHeader.size(), &frame) !=
      static_cast<int>(kProtocolHeader.size()))
    abort();  // cannot happen with librabbitmq 0.8 .. 0.13
}

int Decoder::feed(const void* data, size_t len, amqp_frame_t* frame) {
  return amqp_handle_input(state_.get(), amqp_bytes_t{len, const_cast<void*>(data)}, frame);
}

bool Decoder::tune(int channel_max, size_t frame_max) {
  // librabbitmq insists on being between frames here (it aborts otherwise)
  if (!amqp_release_buffers_ok(state_.get())) return false;
  // heartbeat 0: librabbitmq's own heartbeat clock is never consulted; the loop's timers are
  return amqp_tune_connection(state_.get(), channel_max, static_cast<int>(frame_max), 0) ==
         AMQP_STATUS_OK;
}

void Decoder::release(uint16_t channel) {
  amqp_maybe_release_buffers_on_channel(state_.get(), channel);
}

amqp_method_number_t expected_reply(amqp_method_number_t id) {
  switch (id) {
    case AMQP_CHANNEL_OPEN_METHOD: return AMQP_CHANNEL_OPEN_OK_METHOD;
    case AMQP_CHANNEL_CLOSE_METHOD: return AMQP_CHANNEL_CLOSE_OK_METHOD;
    case AMQP_CHANNEL_FLOW_METHOD: return AMQP_CHANNEL_FLOW_OK_METHOD;
    case AMQP_EXCHANGE_DECLARE_METHOD: return AMQP_EXCHANGE_DECLARE_OK_METHOD;
    case AMQP_EXCHANGE_DELETE_METHOD: return AMQP_EXCHANGE_DELETE_OK_METHOD;
    case AMQP_EXCHANGE_BIND_METHOD: return AMQP_EXCHANGE_BIND_OK_METHOD;
    case AMQP_EXCHANGE_UNBIND_METHOD: return AMQP_EXCHANGE_UNBIND_OK_METHOD;
    case AMQP_QUEUE_DECLARE_METHOD: return AMQP_QUEUE_DECLARE_OK_METHOD;
    case AMQP_QUEUE_BIND_METHOD: return AMQP_QUEUE_BIND_OK_METHOD;
    case AMQP_QUEUE_PURGE_METHOD: return AMQP_QUEUE_PURGE_OK_METHOD;
    case AMQP_QUEUE_DELETE_METHOD: return AMQP_QUEUE_DELETE_OK_METHOD;
    case AMQP_QUEUE_UNBIND_METHOD: return AMQP_QUEUE_UNBIND_OK_METHOD;
    case AMQP_BASIC_QOS_METHOD: return AMQP_BASIC_QOS_OK_METHOD;
    case AMQP_BASIC_CONSUME_METHOD: return AMQP_BASIC_CONSUME_OK_METHOD;
    case AMQP_BASIC_CANCEL_METHOD: return AMQP_BASIC_CANCEL_OK_METHOD;
    case AMQP_BASIC_RECOVER_METHOD: return AMQP_BASIC_RECOVER_OK_METHOD;
    case AMQP_CONFIRM_SELECT_METHOD: return AMQP_CONFIRM_SELECT_OK_METHOD;
    case AMQP_TX_SELECT_METHOD: return AMQP_TX_SELECT_OK_METHOD;
    case AMQP_TX_COMMIT_METHOD: return AMQP_TX_COMMIT_OK_METHOD;
    case AMQP_TX_ROLLBACK_METHOD: return AMQP_TX_ROLLBACK_OK_METHOD;
    default: return 0;
  }
}

std::string method_name(amqp_method_number_t id) {
  const char* n = amqp_method_name(id);
  return n ? n : fmt::format("method {:#010x}", id);
}

}  // namespace warren::amqp
