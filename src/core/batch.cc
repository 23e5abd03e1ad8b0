#include "core/batch.h"

#include <memory>

namespace warren::core {

void publish_batch(const PublishOne& publish, std::vector<Message> messages, BatchCallback done) {
  struct Pending {
    BatchResult result;
    size_t left;
    BatchCallback done;
  };
  auto pending = std::make_shared<Pending>(
      Pending{{std::vector<PublishResult>(messages.size(), {PublishStatus::confirmed, {}}), true},
              messages.size(), std::move(done)});
  if (messages.empty()) return pending->done(pending->result);
  for (size_t i = 0; i < messages.size(); ++i) {
    publish(std::move(messages[i]), [pending, i](const PublishResult& r) {
      pending->result.items[i] = r;
      if (r.status != PublishStatus::confirmed) pending->result.all_confirmed = false;
      if (--pending->left == 0) pending->done(pending->result);
    });
  }
}

}  // namespace warren::core
