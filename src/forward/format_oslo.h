// The serving side of oslo.messaging RPC: a `format: oslo` forwarder stands where an oslo
// server would, on the same queues, and answers each request from an HTTP backend. The wire
// format itself (envelope, request and reply dicts, failures) is core/oslo's; this file (with
// format_oslo.cc, the Format) is the mapping between it and HTTP, and the queues. Pure;
// unit-tested in t/forward/oslo_format_test.cc.
//
// Request -> HTTP: POST backend.url/<method> (after `rewrite`), body = `args` as JSON, headers
//   Content-Type: application/json, X-Oslo-Method, X-Oslo-Kind (call | cast),
//   X-Oslo-Unique-Id, X-Oslo-Namespace and X-Oslo-Version (when the request has them),
//   X-Oslo-Context (the whole context as JSON) and X-Oslo-Context-<Key> per context key (the
//   key with `_` turned into `-`: proxies such as nginx drop header names with underscores;
//   values as text, non-strings as JSON). man/warren-rpc.7 documents the same.
// HTTP -> reply: 2xx: the body as JSON is the `result` (an empty body is null, a body that is
//   not JSON the result as a string); anything else, or no answer at all, is a `failure` of
//   class HTTPError, module "warren", message "HTTP <status>: <body>", which an oslo client
//   raises as RemoteError.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config.h"
#include "core/oslo.h"
#include "forward/format.h"

namespace warren::forward {

inline constexpr std::string_view kOsloFailureClass = "HTTPError";
inline constexpr std::string_view kOsloFailureModule = "warren";
// A failure's message carries at most this much of the backend's body.
inline constexpr size_t kOsloFailureBodyLimit = 2000;
// Heartbeats only for calls whose _timeout is at least this (oslo's call monitor).
inline constexpr double kOsloMinHeartbeatTimeout = 2;
// A longer _timeout gets heartbeats as if it were this long: more heartbeats than the caller
// needs do no harm, and the interval must fit a timer (a _timeout of 1e300 is valid JSON).
inline constexpr double kOsloMaxHeartbeatTimeout = 86400;

// What an oslo server of oslo.topic declares and consumes (oslo's rabbit driver with its
// defaults: amqp_durable_queues and amqp_auto_delete false, no HA, no quorum queues):
//   topic exchange oslo.exchange (not durable, not auto-delete) with the queues <topic> and
//   <topic>.<server>, each bound with its own name, no arguments; the fanout exchange
//   <topic>_fanout (not durable, auto-delete) with the queue <topic>_fanout_<fanout_id>
//   (x-expires 30 min), bound with routing key <topic>.
std::vector<core::ConsumeQueue> oslo_queues(const OsloConfig& oslo, std::string_view server,
                                      std::string_view fanout_id);
// The server name: oslo.server, or when that is empty this host's name (oslo's `host` default).
std::string oslo_server_name(const OsloConfig& oslo);

// A backend's 2xx answer as the call's result.
nlohmann::json oslo_result(const BackendResponse& response);
// A backend's non-2xx answer, or its failure to answer, as the call's failure.
core::oslo::Failure oslo_failure(const BackendResponse& response);

}  // namespace warren::forward
