// The HTTP ingress binding for publishing (statelessd's API): translates requests into
// core::Publisher calls and their outcomes into status codes. No business rule lives here.
#pragma once

#include "core/publisher.h"

namespace warren {

class HttpServer;

void publish_routes(HttpServer& server, core::Publisher& publisher);

}  // namespace warren
