// The reference warren is measured against: a raw librabbitmq client on one connection, using
// librabbitmq's own blocking socket API (fine here: this is a client, not the daemon).
//
//   publisher_tool [--port P] [--queue Q] [--count N] [--size S] [--window W] [--seconds T]
//                  [--rate R] [--delivery-mode 1|2]
//   publisher_tool --consume [--port P] [--queue Q] [--count N] [--prefetch P] [--seconds T]
//
// Publish mode sends N messages (persistent unless --delivery-mode 1) of S bytes to the default exchange
// with publisher confirms in a sliding window of W unconfirmed messages (paced at R messages/s
// with --rate, for latency at a given load); consume mode reads N
// messages with basic.qos prefetch and acks multiple every 100. Both stop early after T seconds
// and print one JSON line: {"mode":..., "messages":..., "seconds":..., "msgs_per_s":...}; publish
// mode adds the confirm latency (publish to basic.ack) p50 and p99.
// The queue must exist (bench/run declares it); exit 1 on any broker error.
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <poll.h>
#include <sys/time.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <optional>
#include <string_view>
#include <vector>

#include "handles.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 5672;
  std::string user = "guest", password = "guest";
  std::string queue = "warren-bench";
  long count = 100000;
  size_t size = 100;
  long window = 256;
  long prefetch = 1000;
  double seconds = 10;
  double rate = 0;  // messages per second, 0 = as fast as the window allows
  bool consume = false;
  int delivery_mode = 2;  // 1 transient, 2 persistent (the broker confirms after its disk write)
};

[[noreturn]] void die(std::string_view what) {
  fmt::print(stderr, "publisher_tool: {}\n", what);
  std::exit(1);
}

void check_rpc(const amqp_rpc_reply_t& r, std::string_view call) {
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return;
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
    die(fmt::format("{}: {}", call, amqp_error_string2(r.library_error)));
  if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
      r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
    die(fmt::format("{}: channel closed {} {}", call, m->reply_code,
                    std::string_view(static_cast<char*>(m->reply_text.bytes), m->reply_text.len)));
  }
  die(fmt::format("{}: broker error (method {:#x})", call, r.reply.id));
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) die(fmt::format("{} needs a value", arg));
      return argv[++i];
    };
    if (arg == "--host") o.host = value();
    else if (arg == "--port") o.port = std::atoi(value());
    else if (arg == "--user") o.user = value();
    else if (arg == "--password") o.password = value();
    else if (arg == "--queue") o.queue = value();
    else if (arg == "--count") o.count = std::atol(value());
    else if (arg == "--size") o.size = std::strtoul(value(), nullptr, 10);
    else if (arg == "--window") o.window = std::atol(value());
    else if (arg == "--prefetch") o.prefetch = std::atol(value());
    else if (arg == "--seconds") o.seconds = std::atof(value());
    else if (arg == "--rate") o.rate = std::atof(value());
    else if (arg == "--consume") o.consume = true;
    else if (arg == "--delivery-mode") o.delivery_mode = std::atoi(value());
    else die(fmt::format("unknown option {} (see the comment at the top of bench/publisher_tool.cc)", arg));
  }
  if (o.count <= 0 || o.window <= 0 || o.prefetch <= 0 || o.prefetch > 65535 || o.seconds <= 0 ||
      (o.delivery_mode != 1 && o.delivery_mode != 2))
    die("--count, --window, --seconds must be positive, --prefetch 1..65535, --delivery-mode 1 or 2");
  return o;
}

warren::AmqpStatePtr open_connection(const Options& o) {
  warren::AmqpStatePtr conn(amqp_new_connection());
  amqp_socket_t* socket = amqp_tcp_socket_new(conn.get());  // owned by the connection
  if (!socket) die("amqp_tcp_socket_new failed");
  timeval timeout{5, 0};
  if (int rc = amqp_socket_open_noblock(socket, o.host.c_str(), o.port, &timeout); rc != AMQP_STATUS_OK)
    die(fmt::format("connect to {}:{}: {}", o.host, o.port, amqp_error_string2(rc)));
  check_rpc(amqp_login(conn.get(), "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0, AMQP_SASL_METHOD_PLAIN,
                       o.user.c_str(), o.password.c_str()),
            "login");
  amqp_channel_open(conn.get(), 1);
  check_rpc(amqp_get_rpc_reply(conn.get()), "channel.open");
  return conn;
}

// Unconfirmed messages of the sliding window: send times by delivery tag (tag % window), and
// the confirm latency of every message, for p50/p99.
struct Window {
  explicit Window(long size) : sent_at(static_cast<size_t>(size)) {}
  std::vector<Clock::time_point> sent_at;
  uint64_t confirmed_upto = 0;  // every tag up to this one is settled
  long outstanding = 0, nacked = 0;
  std::vector<float> latency_ms;

  void sent(uint64_t tag) {
    sent_at[tag % sent_at.size()] = Clock::now();
    ++outstanding;
  }
  void settle(uint64_t tag, bool multiple, bool nack) {
    if (tag <= confirmed_upto) return;
    const uint64_t first = multiple ? confirmed_upto + 1 : tag;
    const auto now = Clock::now();
    for (uint64_t t = first; t <= tag; ++t)
      latency_ms.push_back(std::chrono::duration<float, std::milli>(now - sent_at[t % sent_at.size()]).count());
    const long n = static_cast<long>(tag - first + 1);
    outstanding -= n;
    if (nack) nacked += n;
    // single acks come in order for one queue: counting them is enough for a window
    confirmed_upto = tag;
  }
  float percentile(double p) {
    if (latency_ms.empty()) return 0;
    auto nth = latency_ms.begin() + static_cast<long>(p / 100 * (latency_ms.size() - 1));
    std::nth_element(latency_ms.begin(), nth, latency_ms.end());
    return *nth;
  }
};

// Waits for one frame and settles the confirms it carries. Without `until`, no frame within 5 s
// is fatal; with it, reaching that time simply returns (pacing: confirms are read while waiting
// for the next send slot, so their latency is not inflated by the wait).
void read_confirms(amqp_connection_state_t conn, Window& window,
                   std::optional<Clock::time_point> until = std::nullopt) {
  amqp_frame_t frame;
  timeval timeout{5, 0};
  if (until) {
    // librabbitmq's poll() counts whole milliseconds: a wait under 1 ms until the next send slot
    // was a busy loop that took a core from the broker. Wait on the socket here, to the
    // nanosecond, then read without waiting.
    if (!amqp_data_in_buffer(conn) && !amqp_frames_enqueued(conn)) {
      const auto ns = std::max<long>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(*until - Clock::now()).count());
      const timespec wait{static_cast<time_t>(ns / 1000000000), ns % 1000000000};
      pollfd socket{amqp_get_sockfd(conn), POLLIN, 0};
      if (ppoll(&socket, 1, &wait, nullptr) <= 0) return;
    }
    timeout = {0, 0};
  }
  int rc = amqp_simple_wait_frame_noblock(conn, &frame, &timeout);
  if (rc == AMQP_STATUS_TIMEOUT && until) return;
  if (rc == AMQP_STATUS_TIMEOUT) die("no publisher confirm within 5 s");
  if (rc != AMQP_STATUS_OK) die(fmt::format("reading confirms: {}", amqp_error_string2(rc)));
  if (frame.frame_type != AMQP_FRAME_METHOD) return;
  switch (frame.payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
      auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
      return window.settle(ack->delivery_tag, ack->multiple, false);
    }
    case AMQP_BASIC_NACK_METHOD: {
      auto* nack = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
      return window.settle(nack->delivery_tag, nack->multiple, true);
    }
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
      die("the broker closed the channel while publishing (does the queue exist?)");
    default:
      return;
  }
}

void run_publish(const Options& o) {
  auto conn = open_connection(o);
  amqp_confirm_select(conn.get(), 1);
  check_rpc(amqp_get_rpc_reply(conn.get()), "confirm.select");

  const std::string body(o.size, 'x');
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
  props.delivery_mode = static_cast<uint8_t>(o.delivery_mode);
  props.content_type = amqp_cstring_bytes("text/plain");
  const amqp_bytes_t queue = amqp_cstring_bytes(o.queue.c_str());
  const amqp_bytes_t payload{body.size(), const_cast<char*>(body.data())};

  Window window(o.window);
  window.latency_ms.reserve(static_cast<size_t>(std::min(o.count, 4000000L)));
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(o.seconds);
  long sent = 0;
  while (sent < o.count) {
    if ((sent & 255) == 0 && Clock::now() > deadline) break;
    if (o.rate > 0) {  // the next send slot; bounded: the deadline is checked above
      const auto slot = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(sent / o.rate));
      while (Clock::now() < slot) read_confirms(conn.get(), window, slot);
    }
    if (int rc = amqp_basic_publish(conn.get(), 1, amqp_empty_bytes, queue, 0, 0, &props, payload);
        rc != AMQP_STATUS_OK)
      die(fmt::format("basic.publish: {}", amqp_error_string2(rc)));
    window.sent(static_cast<uint64_t>(++sent));
    while (window.outstanding >= o.window) read_confirms(conn.get(), window);
    amqp_maybe_release_buffers(conn.get());
  }
  while (window.outstanding > 0) read_confirms(conn.get(), window);
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  fmt::print("{{\"mode\":\"publish\",\"messages\":{},\"size\":{},\"window\":{},\"nacked\":{},"
             "\"seconds\":{:.3f},\"msgs_per_s\":{:.0f},\"confirm_p50_ms\":{:.3f},"
             "\"confirm_p99_ms\":{:.3f}}}\n",
             sent, o.size, o.window, window.nacked, secs, sent / secs, window.percentile(50),
             window.percentile(99));
  amqp_connection_close(conn.get(), AMQP_REPLY_SUCCESS);
}

void run_consume(const Options& o) {
  auto conn = open_connection(o);
  amqp_basic_qos(conn.get(), 1, 0, static_cast<uint16_t>(o.prefetch), 0);
  check_rpc(amqp_get_rpc_reply(conn.get()), "basic.qos");
  amqp_basic_consume(conn.get(), 1, amqp_cstring_bytes(o.queue.c_str()), amqp_empty_bytes, 0, 0, 0,
                     amqp_empty_table);
  check_rpc(amqp_get_rpc_reply(conn.get()), "basic.consume");

  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(o.seconds);
  long received = 0;
  uint64_t last_tag = 0, acked_tag = 0;
  auto last_message = start;  // the rate ignores the final wait on an empty queue
  while (received < o.count && Clock::now() < deadline) {
    amqp_envelope_t envelope;
    timeval timeout{3, 0};  // an empty queue ends the run after 3 s
    amqp_rpc_reply_t r = amqp_consume_message(conn.get(), &envelope, &timeout, 0);
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) break;
    check_rpc(r, "consume");
    last_tag = envelope.delivery_tag;
    last_message = Clock::now();
    amqp_destroy_envelope(&envelope);
    if (++received % 100 == 0) {
      amqp_basic_ack(conn.get(), 1, last_tag, 1);
      acked_tag = last_tag;
    }
    amqp_maybe_release_buffers(conn.get());
  }
  if (last_tag != acked_tag) amqp_basic_ack(conn.get(), 1, last_tag, 1);
  const double secs = std::max(1e-6, std::chrono::duration<double>(last_message - start).count());
  fmt::print("{{\"mode\":\"consume\",\"messages\":{},\"prefetch\":{},\"seconds\":{:.3f},"
             "\"msgs_per_s\":{:.0f}}}\n",
             received, o.prefetch, secs, received / secs);
  amqp_connection_close(conn.get(), AMQP_REPLY_SUCCESS);
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  if (options.consume) run_consume(options);
  else run_publish(options);
  return 0;
}
