#include "core/recent_ids.h"

namespace warren::core {

bool RecentIds::seen(const std::string& id, double now) {
  expire(now);
  if (times_.contains(id)) return true;
  if (capacity_ == 0) return false;
  times_.emplace(id, now);
  order_.emplace_back(now, id);
  return false;
}

void RecentIds::forget(const std::string& id) { times_.erase(id); }

// order_ can hold entries of forgotten (or forgotten and re-added) ids: an entry counts only
// when its time is the id's current one. It never grows beyond twice the live ids plus what
// expires next, since every pass drops stale entries from the front.
void RecentIds::expire(double now) {
  while (!order_.empty()) {
    auto& [when, id] = order_.front();
    auto it = times_.find(id);
    const bool live = it != times_.end() && it->second == when;
    if (live && now - when < ttl_ && times_.size() < capacity_ && order_.size() <= 2 * capacity_) break;
    if (live) times_.erase(it);
    order_.pop_front();
  }
}

}  // namespace warren::core
