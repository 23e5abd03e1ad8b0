// A vCD API extension message body ([request, context]) through the vcd translation, and the
// reply built from a backend answer, as the forwarder does for every consumed message.
#include "forward/format.h"
#include "fuzz.h"

using namespace warren;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ForwarderConfig config = [] {
    ForwarderConfig c;
    c.name = "fuzz";
    c.format = ForwarderFormat::vcd;
    c.backend.url = "http://127.0.0.1:9/api";
    c.rewrite_from = "^/api/";
    c.rewrite_to = "/";
    c.vcd.extension = "org";  // the seeds call /api/org/...: they reach the backend request
    // A URN checked at once, a name and the org membership left to the vCD API.
    c.vcd.required_rights = {"urn:vcloud:right:r", "Some Right"};
    c.vcd.check_org_membership = true;
    c.vcd.allowed_orgs = {"org"};
    c.vcd.forward_rights = true;
    return c;
  }();
  static const auto format = forward::make_format(config);
  amqp::Delivery message;
  message.body = std::string(fuzz::as_text(data, size));
  message.properties.reply_to = "replies";
  message.properties.correlation_id = "c";
  auto t = format->translate(message);
  forward::BackendResponse response;
  response.status = 200;
  response.content_type = "application/json";
  response.body = "{}";
  (void)format->reply(message, t, t.kind == forward::Translation::Kind::answer ? t.answer : response);
  return 0;
}
