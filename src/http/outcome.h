// What a publish outcome answers over HTTP: one table for every route that publishes, so that
// a message, a batch item and an RPC request say the same thing for the same broker answer.
#pragma once

#include <string_view>

#include "core/publisher.h"

namespace warren {

struct HttpOutcome {
  int status;
  std::string_view error;  // the JSON body's "error"; empty for confirmed (204)
};

HttpOutcome http_outcome(core::PublishStatus status);

}  // namespace warren
