#include "core/forwarding.h"

#include <algorithm>
#include <cmath>

namespace warren::core {

const char* disposition_name(Disposition d) {
  switch (d) {
    case Disposition::ack: return "ack";
    case Disposition::retry: return "retry";
    case Disposition::dead_letter: return "dead_letter";
  }
  return "?";
}

Disposition forward_disposition(int status, int attempt, int max_attempts) {
  if (status >= 200 && status < 300) return Disposition::ack;
  // Redirects are not followed, so a 3xx, like a 4xx, will not change on a retry; and a message
  // is acked only after a 2xx (design.md), or once its reply to the caller is published.
  if (status >= 300 && status < 500) return Disposition::dead_letter;
  // 5xx, 1xx that never became final, or no answer at all: the backend may do better later.
  return attempt < max_attempts ? Disposition::retry : Disposition::dead_letter;
}

double retry_delay(const RetryPolicy& retry, int attempt) {
  if (attempt < 1) attempt = 1;
  // 2^62 overflows nothing in a double, and the cap applies long before that matters.
  const double delay = retry.initial_delay * std::pow(2.0, std::min(attempt - 1, 62));
  return std::max(0.0, std::min(delay, retry.max_delay));
}

const char* status_class(int status) {
  if (status >= 200 && status < 300) return "2xx";
  if (status >= 300 && status < 400) return "3xx";
  if (status >= 400 && status < 500) return "4xx";
  if (status >= 500 && status < 600) return "5xx";
  return "error";
}

}  // namespace warren::core
