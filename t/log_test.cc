#include "log.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace warren {
namespace {

// What the logger writes to stderr while `body` runs.
template <typename F>
std::string captured_stderr(F body) {
  char path[] = "/tmp/warren-log-test-XXXXXX";
  const int file = mkstemp(path);
  unlink(path);
  const int saved = dup(STDERR_FILENO);
  dup2(file, STDERR_FILENO);
  body();
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::string out;
  char buf[4096];
  lseek(file, 0, SEEK_SET);
  for (ssize_t n; (n = read(file, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(file);
  return out;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Log, ControlCharactersInAnArgumentCannotForgeALine) {
  const std::string user = "evil\r\nFAKE LINE error master: owned\x1b[2J";
  auto out = captured_stderr([&] { log_warning("login of {} refused", user); });
  EXPECT_EQ(count(out, "\n"), 1u) << out;
  EXPECT_NE(out.find("login of evil\\r\\nFAKE LINE error master: owned\\x1b[2J refused"),
            std::string::npos)
      << out;
}

TEST(Log, AFloodFromOneCallSiteIsBounded) {
  auto out = captured_stderr([] {
    for (int i = 0; i < 5000; ++i) log_warning("flood line {}", i);
    log_warning("another call site");
  });
  EXPECT_GE(count(out, "flood line"), 1u);
  EXPECT_LE(count(out, "flood line"), 100u);
  EXPECT_EQ(count(out, "another call site"), 1u) << "a flood silences its own call site only";
}

}  // namespace
}  // namespace warren
