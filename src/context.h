// What every object of a worker is built with: its loop and the figures it counts into. Made
// once per worker (proc/worker.cc); amqp/ takes the Loop alone and counts into amqp::Stats.
#pragma once

#include "loop.h"
#include "stats.h"

namespace warren {

struct Context {
  Loop& loop;
  Counters& counters;
  Histograms& histograms;
};

}  // namespace warren
