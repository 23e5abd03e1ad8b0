// The event binding (seed 003): GET /events/{vhost}/{exchange}/{binding_key} streams what flows
// through an exchange as Server-Sent Events. Translation only; the subscription is core's.
#pragma once

#include <string>

#include "config.h"
#include "core/subscriber.h"
#include "context.h"

namespace warren {

class HttpServer;

void event_routes(HttpServer& server, Context& context, const Config& config);

// One event in the text/event-stream format: `id:`, `event:`, one `data:` line per body line
// (CRLF, CR and LF all end a line, as the SSE rules say), then a blank line.
std::string sse_format(const core::Event& event);

}  // namespace warren
