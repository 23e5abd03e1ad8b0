// What the format tests share: a fixture holding the config a suite starts from, and look-ups
// of a backend request's headers.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <utility>

#include "forward/format.h"

namespace warren::forward {

// `cfg` starts as `Make` returns it; a test changes it, then asks for format().
template <ForwarderConfig (*Make)()>
class FormatFixture : public ::testing::Test {
 protected:
  std::unique_ptr<Format> format() const { return make_format(cfg); }

  ForwarderConfig cfg = Make();
};

// A request's header, or "<none>".
inline std::string header(const BackendRequest& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "<none>";
}

// Each named header has its value in the request ("<none>": it is absent), as one table.
inline void expect_headers(const BackendRequest& r,
                           std::initializer_list<std::pair<const char*, const char*>> want) {
  for (const auto& [name, value] : want) EXPECT_EQ(header(r, name), value) << name;
}

}  // namespace warren::forward
