// http.request_timeout for evhttp's client connections: once a client has sent the first byte
// of a request it has that long to send the rest, else it is answered 408 and disconnected.
// libevent 2.1's own timeout restarts with every byte read, so a client trickling a request a
// byte at a time (slowloris) would hold its connection for ever; and its timeouts close without
// a word. A connection idle between requests is left to evhttp's timeout
// (http.idle_connection_timeout), closed silently as nginx does.
//
// This needs to hear about every connection's end, through evhttp's one close callback per
// connection: so it owns that callback and lends it out (on_close).
#pragma once

#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "context.h"
#include "handles.h"

namespace warren {

class ClientDeadlines : NonCopyable {
 public:
  ClientDeadlines(Context& context, double request_timeout);
  ~ClientDeadlines();

  // Makes every connection `http` accepts from now on go through here (evhttp_set_bevcb). The
  // evhttp must be freed before this object.
  void attach(evhttp* http);
  // The request is whole and in a handler: its connection's clock stops until the reply has
  // been written, and starts again with the next request's first byte.
  void request_started(evhttp_request* req);
  // `cb` runs once when the connection of `req` closes, for whatever reason; an empty `cb`
  // cancels it. One per connection, as with evhttp_connection_set_closecb.
  void on_close(evhttp_request* req, std::function<void()> cb);

 private:
  struct Client;

  Client* find(evhttp_connection* conn);
  void expire(Client& client);
  void forget(bufferevent* bev);

  // evhttp_set_bevcb: the bufferevent of each new connection, made here so its input is seen.
  static bufferevent* on_new_connection(event_base* base, void* arg);
  // evhttp has no hook once a connection is set up: this runs on the next pass and finds it.
  static void on_adopt(evutil_socket_t, short, void* arg);
  static void on_input(evbuffer* input, const evbuffer_cb_info* info, void* arg);
  static void on_deadline(evutil_socket_t, short, void* arg);
  static void on_reap(evutil_socket_t, short, void* arg);
  static void on_reply_written(evhttp_request* req, void* arg);
  static void on_closed(evhttp_connection* conn, void* arg);

  Loop& loop_;
  timeval timeout_;
  Counters& counters_;
  std::unordered_map<bufferevent*, std::unique_ptr<Client>> clients_;
  std::vector<bufferevent*> unadopted_;  // each holds a reference (bufferevent_incref)
  std::vector<bufferevent*> expired_;    // answered 408, to be freed on the next pass
  EventPtr adopt_event_;
  EventPtr reap_event_;
};

}  // namespace warren
