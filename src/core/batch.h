// A batch of messages for one publisher: each published on its own, one answer once the broker
// has settled them all, with every message's outcome in the batch's order. Bindings parse the
// batch and render the answer; they check every message before calling this, so that a bad
// batch publishes nothing.
#pragma once

#include <functional>
#include <vector>

#include "core/publisher.h"

namespace warren::core {

struct BatchResult {
  std::vector<PublishResult> items;  // one per message, in the batch's order
  bool all_confirmed = true;         // the broker has every message
};
using BatchCallback = std::function<void(const BatchResult&)>;
// How one message goes out: Publisher::publish for a given sender, or a stand-in in tests.
using PublishOne = std::function<void(Message, PublishCallback)>;

// `done` is called once, after the last message's own callback; at once for an empty batch.
void publish_batch(const PublishOne& publish, std::vector<Message> messages, BatchCallback done);

}  // namespace warren::core
