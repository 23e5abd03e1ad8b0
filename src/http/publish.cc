#include "http/publish.h"

#include "core/batch.h"
#include "http/outcome.h"
#include "http/publish_request.h"
#include "http/request.h"
#include "http/server.h"
#include "json.h"

namespace warren {
namespace {

// Every publish route: a POST with the broker's credentials.
const RouteRules kPublishRules{"POST", "publish with POST", true};

class PublishHandler {
 public:
  PublishHandler(HttpServer& server, core::Publisher& publisher)
      : server_(server), publisher_(publisher) {}

  void operator()(Exchange* req, const std::string& raw_path) {
    auto admitted = admit(server_, req, kPublishRules, parse_publish_path(raw_path));
    if (!admitted) return;
    const auto& [path, request] = *admitted;
    if (path.batch) return publish_batch(req, path, request);

    core::Message message;
    message.exchange = path.exchange;
    message.routing_key = path.routing_key;
    if (auto error = read_fields(req, request, message)) return server_.reply_error(req, *error);
    publisher_.publish(request.who, std::move(message), [this, req](const core::PublishResult& r) {
      server_.guard(req, [&] {
        auto [code, error] = http_outcome(r.status);
        if (code == 204) return server_.reply(req, 204, "", "");
        server_.reply_error(req, code, error, r.detail);
      });
    });
  }

 private:
  // Fields from the query string, then from a form or a multipart form (a field in both: the
  // body's wins, as statelessd's Tornado did); any other body is the message itself, moved
  // from the request (a message is held until its confirm: a 1 MiB one would be held twice).
  std::optional<HttpError> read_fields(Exchange* req, const Request& request, core::Message& m) {
    const std::string_view content_type = request.content_type, body = request.body;
    std::map<std::string, std::string> fields;
    const std::string type = media_type(content_type);
    const bool form = type == "application/x-www-form-urlencoded";
    const bool multipart = type == "multipart/form-data";
    if (!parse_form(request.query, &fields))
      return HttpError{400, "bad query", "malformed percent-encoding"};
    if (!form && !multipart && fields.count("body"))
      return HttpError{400, "bad field", "body: the raw request body is the message"};
    if (form) {
      if (!parse_form(body, &fields)) return HttpError{400, "bad form", "malformed percent-encoding"};
    } else if (multipart) {
      if (auto e = parse_multipart(content_type, body, &fields); !e.empty())
        return HttpError{400, "bad form", e};
    } else {
      if (!content_type.empty()) m.properties.content_type = std::string(content_type);
      m.body = req->take_body();  // `body` is not read after this
    }
    if ((form || multipart) && !fields.count("body"))
      return HttpError{400, "bad field", "body: missing (the message body field)"};
    for (const auto& [key, value] : fields)
      if (auto error = apply_field(m, key, value)) return error;
    return std::nullopt;
  }

  void publish_batch(Exchange* req, const PublishPath& path, const Request& request) {
    // Each message has its own copy: the batch's text is let go before the confirms come.
    const std::string body = req->take_body();
    auto messages = batch_messages(path.exchange, request.content_type, body);
    if (auto* e = std::get_if<HttpError>(&messages)) return server_.reply_error(req, *e);
    core::publish_batch(
        [this, who = request.who](core::Message m, core::PublishCallback done) {
          publisher_.publish(who, std::move(m), std::move(done));
        },
        std::move(std::get<std::vector<core::Message>>(messages)),
        [this, req](const core::BatchResult& batch) {
          server_.guard(req, [&] { answer_batch(req, batch); });
        });
  }

  // {"results": [{"status": 204}, {"status": 4xx/5xx, "error": ..., "detail": ...}, ...]}, the
  // confirmed rows written as text: a JSON object per row was a tenth of a worker's CPU in
  // batches.
  void answer_batch(Exchange* req, const core::BatchResult& batch) {
    std::string text = R"({"results":[)";
    for (const core::PublishResult& r : batch.items) {
      auto [code, error] = http_outcome(r.status);
      if (text.back() != '[') text += ',';
      if (code == 204) {
        text += R"({"status":204})";
      } else {
        text += json_text({{"status", code}, {"error", error}, {"detail", r.detail}});
      }
    }
    text += "]}";
    // 200 only when the broker has every message: a client that reads only the status must
    // not take a returned or refused item for delivered.
    server_.reply(req, batch.all_confirmed ? 200 : 207, "application/json", text);
  }

  HttpServer& server_;
  core::Publisher& publisher_;
};

}  // namespace

void publish_routes(HttpServer& server, core::Publisher& publisher) {
  server.route_fallback(shared_handler(std::make_shared<PublishHandler>(server, publisher)));
}

}  // namespace warren
