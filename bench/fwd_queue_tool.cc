// The raw reference for bench/forward_run, on warren's own broker link (src/amqp):
//   fwd_queue_tool PORT fill QUEUE N SIZE         declare QUEUE (durable), publish N persistent
//                                                 messages of SIZE bytes, confirms in a window
//   fwd_queue_tool PORT consume QUEUE N PREFETCH [ACK_EVERY]
//                                                 consume N messages, ack multiple every
//                                                 ACK_EVERY (default 100; 1: ack each message);
//                                                 prints "consume <msgs/s>"
#include <cstdio>
#include <cstdlib>
#include <string>

#include "amqp/channel.h"
#include "amqp/connection.h"
#include "loop.h"

using namespace warren;

namespace {

constexpr size_t kWindow = 256;

int usage() {
  std::fprintf(stderr,
               "usage: fwd_queue_tool PORT fill QUEUE N SIZE | PORT consume QUEUE N PREFETCH [ACK_EVERY]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) return usage();
  const int port = std::atoi(argv[1]);
  const std::string mode = argv[2], queue = argv[3];
  const long n = std::atol(argv[4]), arg = std::atol(argv[5]);
  const long ack_every = argc == 7 ? std::atol(argv[6]) : 100;
  if (n < 1 || arg < 0 || ack_every < 1) return usage();
  Loop loop;
  event_base* base = loop.base();
  amqp::ConnectionOptions o;
  o.hosts = {{"127.0.0.1", port}};
  amqp::Connection conn(loop, o);
  int rc = 1;
  conn.set_state_callback([&](amqp::ConnectionState s, const amqp::Result& r) {
    if (s == amqp::ConnectionState::closed) {
      if (!r.ok()) std::fprintf(stderr, "broker connection closed: %s\n", r.text.c_str());
      event_base_loopbreak(base);
    }
  });
  conn.start();
  auto done = [&](int code) {
    rc = code;
    conn.close();
  };

  if (mode == "fill") {
    auto ch = conn.open_channel(true);
    ch->declare_queue(queue, true, false, false, nlohmann::json::object(),
                      [&](const amqp::Result& r, const std::string&, uint32_t, uint32_t) {
                        if (!r.ok()) {
                          std::fprintf(stderr, "queue.declare failed: %s\n", r.text.c_str());
                          done(1);
                        }
                      });
    const std::string body(static_cast<size_t>(arg), 'x');
    amqp::Properties p;
    p.delivery_mode = 2;
    long sent = 0, confirmed = 0;
    std::function<void()> pump = [&] {
      while (sent < n && sent - confirmed < static_cast<long>(kWindow)) {
        ++sent;
        ch->publish("", queue, false, p, body, 30, [&](const amqp::Result& r) {
          if (!r.ok()) {
            std::fprintf(stderr, "publish failed: %s\n", r.text.c_str());
            return done(1);
          }
          if (++confirmed == n) return done(0);
          pump();
        });
      }
    };
    pump();
    event_base_dispatch(base);  // here: the callbacks refer to this block's locals
  } else if (mode == "consume") {
    auto ch = conn.open_channel(false);
    long got = 0;
    amqp::Clock::time_point first;
    ch->consume(
        queue, static_cast<uint16_t>(arg), false, false,
        [&](amqp::Delivery&& d) {
          if (got++ == 0) first = amqp::Clock::now();
          if (got % ack_every == 0 || got == n) ch->ack(d.delivery_tag, ack_every > 1);
          if (got == n) {
            const double s = std::chrono::duration<double>(amqp::Clock::now() - first).count();
            std::printf("consume %.0f\n", s > 0 ? (n - 1) / s : 0.0);
            done(0);
          }
        },
        [](const amqp::Result&) {}, [&](const amqp::Result& r, const std::string&) {
          if (!r.ok()) done(1);
        });
    event_base_dispatch(base);
  } else {
    return usage();
  }
  return rc;
}
