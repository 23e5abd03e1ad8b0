// A measurement, not a server: the publish route on the lean path's WireConnection (issue 14),
// with the daemon's own Publisher, form parsing and Basic auth, and nothing else (no other
// route, no timeouts, no stats). It answers what bench/publish.lua sends, so that wrk can
// compare its CPU per message with warrend's before the routes are ported.
//   build/lean_proto_tool PORT BROKER_PORT
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>

#include "context.h"
#include "core/publisher.h"
#include "http/outcome.h"
#include "http/publish_request.h"
#include "http/request.h"
#include "http/wire_connection.h"
#include "loop.h"
#include "stats.h"

using namespace warren;

namespace {

struct Server {
  Loop& loop;
  core::Publisher& publisher;
  std::map<http::WireConnection*, std::unique_ptr<http::WireConnection>> connections;

  void handle(http::WireConnection& c, uint64_t seq, http::WireRequest&& r) {
    const std::string target = r.target.substr(0, r.target.find('?'));
    auto path = parse_publish_path(target);
    auto who = parse_basic_auth(r.header("Authorization"), "/");
    std::map<std::string, std::string> fields;
    if (auto* p = std::get_if<PublishPath>(&path); p && who && parse_form(r.body, &fields)) {
      core::Message m;
      m.exchange = p->exchange;
      m.routing_key = p->routing_key;
      who->vhost = p->vhost;
      for (const auto& [k, v] : fields)
        if (apply_field(m, k, v)) return c.reply(seq, {400, "", {}, ""});
      // The client may be gone by the confirm (a measurement tool: the pointer is the check).
      publisher.publish(*who, std::move(m), [this, conn = &c, seq](const core::PublishResult& res) {
        if (connections.count(conn)) conn->reply(seq, {http_outcome(res.status).status, "", {}, ""});
      });
      return;
    }
    c.reply(seq, {400, "", {}, ""});
  }
};

void on_accept(evutil_socket_t fd, short, void* arg) {
  auto* s = static_cast<Server*>(arg);
  for (;;) {
    const int client = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK);
    if (client < 0) return;
    auto conn = std::make_unique<http::WireConnection>(
        s->loop, Fd(client), http::WireLimits{8192, 1 << 20},
        [s](http::WireConnection& c, uint64_t seq, http::WireRequest&& r) { s->handle(c, seq, std::move(r)); },
        [s](http::WireConnection& c) {
          auto it = s->connections.find(&c);
          if (it != s->connections.end()) {
            s->loop.defer_delete(std::move(it->second));
            s->connections.erase(it);
          }
        });
    s->connections.emplace(conn.get(), std::move(conn));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return fprintf(stderr, "usage: lean_proto_tool PORT BROKER_PORT\n"), 2;
  Loop loop;
  Counters counters;
  Histograms histograms;
  Context context{loop, counters, histograms};
  core::PublishOptions options;
  options.broker.hosts = {{"127.0.0.1", atoi(argv[2])}};
  core::Publisher publisher(context, options);
  Server server{loop, publisher, {}};
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  const int on = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(atoi(argv[1])));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listener, 1024) != 0)
    return perror("bind/listen"), 1;
  EventPtr accept_event(event_new(loop.base(), listener, EV_READ | EV_PERSIST, on_accept, &server));
  event_add(accept_event.get(), nullptr);
  event_base_dispatch(loop.base());
}
