// Every HTTP status warren answers, listed once: the reason phrase on the status line
// (http_reason) and the per-status counters (response.NNN in src/stats.h) both come from here.
// A status off the list goes out as "Unknown" and counts as response.other.
#pragma once

// X(arg, code, reason phrase, note): `note` ends the counter's help text; `arg` is passed
// through untouched, so that a list that includes this one (HTTP_REQUEST_COUNTERS in stats.h)
// can hand on its own X.
#define WARREN_HTTP_STATUSES(X, arg)                                          \
  X(arg, 200, "OK", "")                                                       \
  X(arg, 202, "Accepted", "")                                                 \
  X(arg, 204, "No Content", " (message confirmed)")                           \
  X(arg, 207, "Multi-Status", " (a batch not all confirmed)")                 \
  X(arg, 400, "Bad Request", "")                                              \
  X(arg, 401, "Unauthorized", "")                                             \
  X(arg, 403, "Forbidden", "")                                                \
  X(arg, 404, "Not Found", "")                                                \
  X(arg, 405, "Method Not Allowed", "")                                       \
  X(arg, 408, "Request Timeout", "")                                          \
  X(arg, 413, "Payload Too Large", "")                                        \
  X(arg, 415, "Unsupported Media Type", "")                                   \
  X(arg, 422, "Unprocessable Entity", " (unroutable)")                        \
  X(arg, 431, "Request Header Fields Too Large", "")                          \
  X(arg, 500, "Internal Server Error", "")                                    \
  X(arg, 502, "Bad Gateway", "")                                              \
  X(arg, 503, "Service Unavailable", "")                                      \
  X(arg, 504, "Gateway Timeout", "")                                          \
  X(arg, 505, "HTTP Version Not Supported", "")
