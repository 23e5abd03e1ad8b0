// A bounded memory of ids seen lately, for dropping duplicates: an oslo.messaging request that
// reaches a server twice (a publisher retry after a lost confirm) carries the same _unique_id.
// An id is remembered for `ttl` seconds, and at most `capacity` ids at once (the oldest go
// first). Pure: the caller passes the clock; unit-tested in t/core/recent_ids_test.cc.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace warren::core {

class RecentIds {
 public:
  RecentIds(size_t capacity, double ttl) : capacity_(capacity), ttl_(ttl) {}

  // True when `id` was seen within the last ttl seconds (and forgets nothing new); otherwise
  // remembers it as seen at `now` and returns false.
  bool seen(const std::string& id, double now);
  // Forgets `id`: its message went back to the queue unprocessed, so its redelivery is no
  // duplicate.
  void forget(const std::string& id);
  size_t size() const { return times_.size(); }

 private:
  void expire(double now);

  size_t capacity_;
  double ttl_;
  std::unordered_map<std::string, double> times_;  // id -> when it was remembered
  std::deque<std::pair<double, std::string>> order_;  // oldest first; may hold forgotten ids
};

}  // namespace warren::core
