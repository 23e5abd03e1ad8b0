#include "http/publish.h"

#include <event2/keyvalq_struct.h>

#include "http/outcome.h"
#include "http/publish_request.h"

#include <fmt/format.h>
#include "http/server.h"

namespace warren {
namespace {

std::string_view input_body(evhttp_request* req) {
  evbuffer* in = evhttp_request_get_input_buffer(req);
  const size_t n = evbuffer_get_length(in);
  if (n == 0) return {};
  return {reinterpret_cast<const char*>(evbuffer_pullup(in, -1)), n};
}

std::string_view header(evhttp_request* req, const char* name) {
  const char* v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
  return v ? v : "";
}

class PublishHandler {
 public:
  PublishHandler(HttpServer& server, core::Publisher& publisher, const HttpConfig& config)
      : server_(server), publisher_(publisher), config_(config) {}

  void operator()(evhttp_request* req, const std::string& raw_path) {
    auto path_or_error = parse_publish_path(raw_path);
    if (auto* e = std::get_if<HttpError>(&path_or_error)) return fail(req, *e);
    auto& path = std::get<PublishPath>(path_or_error);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
      evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
      return fail(req, {405, "method not allowed", "publish with POST"});
    }
    auto who = parse_basic_auth(header(req, "Authorization"), path.vhost);
    if (!who) return fail(req, {401, "unauthorized", "HTTP Basic credentials are the broker's"});
    std::string_view body = input_body(req);
    if (body.size() > config_.max_body)
      return fail(req, {413, "payload too large",
                        fmt::format("the body is {} bytes, over http.max_body ({})", body.size(),
                                    config_.max_body)});
    const std::string_view content_type = header(req, "Content-Type");
    if (path.batch) return publish_batch(req, path, *who, content_type, body);

    core::Message message;
    message.exchange = path.exchange;
    message.routing_key = path.routing_key;
    if (auto error = read_fields(req, message, content_type, body)) return fail(req, *error);
    publisher_.publish(*who, std::move(message), [this, req](const core::PublishResult& r) {
      server_.guard(req, [&] {
        auto [code, error] = http_outcome(r.status);
        if (code == 204) return server_.reply(req, 204, "", "");
        fail(req, {code, std::string(error), r.detail});
      });
    });
  }

 private:
  // Fields from the query string, then from a form or a multipart form (a field in both: the
  // body's wins, as statelessd's Tornado did); any other body is the message itself.
  std::optional<HttpError> read_fields(evhttp_request* req, core::Message& m,
                                       std::string_view content_type, std::string_view body) {
    std::map<std::string, std::string> fields;
    const std::string type = media_type(content_type);
    const bool form = type == "application/x-www-form-urlencoded";
    const bool multipart = type == "multipart/form-data";
    const char* query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query && !parse_form(query, &fields))
      return HttpError{400, "bad query", "malformed percent-encoding"};
    if (!form && !multipart && fields.count("body"))
      return HttpError{400, "bad field", "body: the raw request body is the message"};
    if (form) {
      if (!parse_form(body, &fields)) return HttpError{400, "bad form", "malformed percent-encoding"};
    } else if (multipart) {
      if (auto e = parse_multipart(content_type, body, &fields); !e.empty())
        return HttpError{400, "bad form", e};
    } else {
      m.body = body;
      if (!content_type.empty()) m.properties.content_type = std::string(content_type);
    }
    if ((form || multipart) && !fields.count("body"))
      return HttpError{400, "bad field", "body: missing (the message body field)"};
    for (const auto& [key, value] : fields)
      if (auto error = apply_field(m, key, value)) return error;
    return std::nullopt;
  }

  struct Batch {
    evhttp_request* req;
    nlohmann::json results;
    size_t pending = 0;
    bool all_confirmed = true;
  };

  void publish_batch(evhttp_request* req, const PublishPath& path, const core::Credentials& who,
                     std::string_view content_type, std::string_view body) {
    auto items_or_error = parse_batch(content_type, body);
    if (auto* e = std::get_if<HttpError>(&items_or_error)) return fail(req, *e);
    auto& items = std::get<std::vector<nlohmann::json>>(items_or_error);
    // Every item is checked before any is sent: a bad batch publishes nothing.
    std::vector<core::Message> messages(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      messages[i].exchange = path.exchange;
      if (auto e = apply_json_item(messages[i], items[i]))
        return fail(req, {e->status, e->error, fmt::format("message {}: {}", i, e->detail)});
    }
    auto batch = std::make_shared<Batch>();
    batch->req = req;
    batch->results = nlohmann::json::array();
    batch->pending = messages.size();
    for (size_t i = 0; i < messages.size(); ++i) {
      batch->results.push_back(nullptr);
      publisher_.publish(who, std::move(messages[i]), [this, batch, i](const core::PublishResult& r) {
        server_.guard(batch->req, [&] {
          auto [code, error] = http_outcome(r.status);
          nlohmann::json row{{"status", code}};
          if (code != 204) {
            row.update({{"error", error}, {"detail", r.detail}});
            batch->all_confirmed = false;
          }
          batch->results[i] = std::move(row);
          // 200 only when the broker has every message: a client that reads only the status
          // must not take a returned or refused item for delivered.
          if (--batch->pending == 0)
            server_.reply_json(batch->req, batch->all_confirmed ? 200 : 207, {{"results", batch->results}});
        });
      });
    }
  }

  void fail(evhttp_request* req, const HttpError& e) { server_.reply_error(req, e.status, e.error, e.detail); }

  HttpServer& server_;
  core::Publisher& publisher_;
  const HttpConfig& config_;
};

}  // namespace

void publish_routes(HttpServer& server, core::Publisher& publisher, const HttpConfig& config) {
  auto handler = std::make_shared<PublishHandler>(server, publisher, config);
  server.route_fallback([handler](evhttp_request* req, const std::string& path) { (*handler)(req, path); });
}

}  // namespace warren
