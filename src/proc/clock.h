// Wall-clock seconds, as the process table, snapshots and uptimes count them.
#pragma once

#include <sys/time.h>

namespace warren {

inline double unix_now() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  return tv.tv_sec + tv.tv_usec / 1e6;
}

}  // namespace warren
