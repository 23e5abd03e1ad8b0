#include "http/events.h"

#include <map>
#include <memory>
#include <vector>

#include "handles.h"
#include "http/outcome.h"
#include "http/publish_request.h"
#include "http/request.h"
#include "http/server.h"
#include "http/wire_connection.h"
#include "log.h"
#include "options.h"

namespace warren {

std::string sse_format(const core::Event& e) {
  std::string out;
  // A field value ends at a line break: keep id and type on their one line.
  auto one_line = [](const std::string& s) { return s.substr(0, s.find_first_of("\r\n")); };
  if (!e.id.empty()) out += "id: " + one_line(e.id) + "\n";
  if (!e.type.empty()) out += "event: " + one_line(e.type) + "\n";
  size_t start = 0;
  for (;;) {
    const size_t end = e.data.find_first_of("\r\n", start);
    out += "data: ";
    out.append(e.data, start, end == std::string::npos ? std::string::npos : end - start);
    out += '\n';
    if (end == std::string::npos) break;
    start = end + (e.data.compare(end, 2, "\r\n") == 0 ? 2 : 1);
  }
  out += '\n';
  return out;
}

namespace {

const RouteRules kEventsRules{"GET", "subscribe with GET", true};

// The same shape as a publish path, behind "/events", and never a batch.
std::variant<PublishPath, HttpError> parse_events_path(std::string_view raw_path) {
  auto path = parse_publish_path(raw_path.substr(7));
  if (auto* bad = std::get_if<HttpError>(&path); bad && bad->status == 400) return path;
  auto* ok = std::get_if<PublishPath>(&path);
  if (!ok || ok->batch || ok->exchange.empty())
    return HttpError{404, "not found", "expected /events/{vhost}/{exchange}/{binding_key}"};
  return path;
}

class EventsHandler : NonCopyable {
 public:
  EventsHandler(HttpServer& server, Context& context, const Config& config)
      : server_(server),
        context_(context),
        config_(config),
        broker_(broker_options(config.broker)),
        counters_(context.counters) {
    // A stopping worker ends its streams; clients reconnect to the next worker.
    server_.on_drain([this] {
      std::vector<Stream*> all;  // end() takes a stream out of streams_
      for (auto& [req, stream] : streams_) all.push_back(stream.get());
      for (Stream* s : all) end(*s);
    });
  }

  void operator()(Exchange* req, const std::string& raw_path) {
    HttpServer::answer_alone(req);  // a stream too slow a client is cut, with its connection
    auto admitted = admit(server_, req, kEventsRules, parse_events_path(raw_path));
    if (!admitted) return;
    const auto& [path, request] = *admitted;
    const core::Credentials& who = request.who;
    // Each stream is a broker connection of its own, outside broker.max_connections.
    const auto open = std::count_if(streams_.begin(), streams_.end(), [](const auto& s) { return !s.second->ended; });
    if (open >= config_.http.max_event_streams) {
      ++counters_.event_streams_refused;
      return server_.reply_error(req, 503, "too many event streams",
                                 fmt::format("this worker serves http.max_event_streams ({}) already",
                                             config_.http.max_event_streams));
    }
    auto stream = std::make_unique<Stream>();
    Stream* s = stream.get();
    s->owner = this;
    s->req = req;
    s->subscription = std::make_unique<core::Subscription>(
        context_, broker_, who,
        path.exchange, path.routing_key,
        [this, s](const core::PublishResult& r) { server_.guard(s->req, [&] { ready(*s, r); }); },
        [this, s](core::Event&& e) { deliver(*s, e); },
        [this, s] {
          deliver(*s, {"", "reconnected",
                       "the broker connection was lost and the subscription made again: events "
                       "published in between are missing"});
        },
        [this, s](const std::string& why) {
          log_info("event stream ended by the broker: {}", why);
          end(*s);
        });
    streams_.emplace(req, std::move(stream));
  }

 private:
  struct Stream {
    EventsHandler* owner = nullptr;
    Exchange* req = nullptr;
    std::unique_ptr<core::Subscription> subscription;
    EventPtr keepalive;
    bool open = false;   // the 200 and the headers went out
    bool ended = false;  // answered, out of streams_; the object goes on the next loop pass
  };

  void ready(Stream& s, const core::PublishResult& r) {
    if (r.status != core::PublishStatus::confirmed) {
      const HttpOutcome answer = http_outcome(r.status);
      server_.reply_error(s.req, answer.status, answer.error, r.detail);
      return forget(s);
    }
    // The client may go at any time, and may have gone while we subscribed: the connection's
    // close hook tells us, from now on.
    if (!HttpServer::on_connection_close(s.req, [this, &s] { end(s); })) {
      server_.reply_error(s.req, 503, "client gone", "the client left while it was subscribed");
      return forget(s);
    }
    s.open = true;
    ++counters_.sse_streams;
    server_.stream_start(s.req, 200, "text/event-stream");
    if (s.ended) return;  // the client had sent all it would: no one to stream to
    server_.stream_chunk(s.req, ": subscribed\n\n");
    s.keepalive.reset(event_new(context_.loop.base(), -1, EV_PERSIST, on_keepalive, &s));
    const timeval tv = to_timeval(config_.http.sse_keepalive);
    event_add(s.keepalive.get(), &tv);
  }

  void deliver(Stream& s, const core::Event& e) {
    if (s.ended || !s.open) return;
    // A client that does not read is cut off rather than allowed to grow the worker: past its
    // own http.sse_max_buffer, or, while the clients of the worker all together fill
    // http.max_output_buffer, past what a connection may hold of answers. Streams alone would
    // otherwise hold sse_max_buffer x max_event_streams (256 MiB by default).
    const size_t unsent = HttpServer::pending_output(s.req);
    const bool over_own = unsent > config_.http.sse_max_buffer;
    if (over_own || (unsent > http::WireConnection::kMaxUnsent && server_.output_buffer_full())) {
      ++counters_.sse_slow_clients;
      log_warning("event client too slow (over {}); disconnecting it",
                  over_own ? "http.sse_max_buffer" : "its share of a full http.max_output_buffer");
      return cut(s);
    }
    ++counters_.sse_events;
    server_.stream_chunk(s.req, sse_format(e));
  }

  void end(Stream& s) {
    if (s.ended) return;
    if (!s.open) {
      server_.reply_error(s.req, 503, "shutting down", "the worker is stopping");
      return forget(s);
    }
    server_.on_connection_close(s.req, nullptr);
    server_.stream_end(s.req);
    forget(s);
  }

  void cut(Stream& s) {
    server_.on_connection_close(s.req, nullptr);
    Exchange* req = s.req;
    forget(s);
    server_.stream_cut(req);  // frees the request: nothing may touch it after this
  }

  void forget(Stream& s) {
    s.ended = true;
    s.keepalive.reset();
    if (s.open) ++counters_.sse_streams_closed;
    // Out of the table now (a new request may get the same address), but not freed
    // inside the subscription's own callback: on the next loop pass.
    auto it = streams_.find(s.req);
    if (it == streams_.end()) return;
    context_.loop.defer_delete(std::move(it->second));
    streams_.erase(it);
  }

  static void on_keepalive(evutil_socket_t, short, void* arg) {
    auto* s = static_cast<Stream*>(arg);
    s->owner->server_.stream_chunk(s->req, ": keepalive\n\n");
  }

  HttpServer& server_;
  Context& context_;
  const Config& config_;
  const amqp::ConnectionOptions broker_;
  Counters& counters_;
  std::map<Exchange*, std::unique_ptr<Stream>> streams_;
};

}  // namespace

void event_routes(HttpServer& server, Context& context, const Config& config) {
  server.route_prefix("/events/", shared_handler(std::make_shared<EventsHandler>(server, context, config)));
}

}  // namespace warren
