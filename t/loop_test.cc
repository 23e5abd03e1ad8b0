#include "loop.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace warren {
namespace {

// One pass of the loop, without waiting for anything.
void one_pass(Loop& loop) { event_base_loop(loop.base(), EVLOOP_ONCE | EVLOOP_NONBLOCK); }

// Says when it is freed.
struct Tracked {
  explicit Tracked(bool* freed) : freed(freed) {}
  ~Tracked() { *freed = true; }
  bool* freed;
};

TEST(Loop, DeferRunsOnTheNextPassNeverInsideTheCaller) {
  Loop loop;
  std::vector<std::string> ran;
  loop.defer([&] {
    ran.push_back("first");
    loop.defer([&] { ran.push_back("deferred by deferred work"); });
  });
  EXPECT_TRUE(ran.empty());
  one_pass(loop);
  // what deferred work defers waits a pass too: the loop cannot spin without serving I/O
  EXPECT_EQ(ran, std::vector<std::string>{"first"});
  one_pass(loop);
  EXPECT_EQ(ran, (std::vector<std::string>{"first", "deferred by deferred work"}));
}

TEST(Loop, DeferDeleteFreesOnTheNextPassAfterTheDeferredWork) {
  Loop loop;
  bool freed = false, freed_when_work_ran = true;
  loop.defer_delete(std::make_unique<Tracked>(&freed));
  loop.defer([&] { freed_when_work_ran = freed; });
  EXPECT_FALSE(freed);
  one_pass(loop);
  EXPECT_TRUE(freed);
  EXPECT_FALSE(freed_when_work_ran);
}

// An object that lets itself go from inside its own timer callback and goes on using its
// members: freed at once, ASan reports a use after free.
struct LetsItselfGo {
  LetsItselfGo(Loop& loop, std::unique_ptr<LetsItselfGo>* slot, bool* freed) : loop(loop), slot(slot), freed(freed) {
    timer.reset(evtimer_new(loop.base(), on_timer, this));
    const timeval zero{0, 0};
    evtimer_add(timer.get(), &zero);
  }
  ~LetsItselfGo() { *freed = true; }
  static void on_timer(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<LetsItselfGo*>(arg);
    self->loop.defer_delete(std::move(*self->slot));
    self->calls_after_letting_go = 1 + static_cast<int>(evtimer_pending(self->timer.get(), nullptr));
  }
  Loop& loop;
  std::unique_ptr<LetsItselfGo>* slot;
  bool* freed;
  EventPtr timer;
  int calls_after_letting_go = 0;
};

TEST(Loop, AnObjectLetGoInsideItsOwnCallbackIsFreedOnTheNextPass) {
  Loop loop;
  bool freed = false;
  std::unique_ptr<LetsItselfGo> slot;
  slot = std::make_unique<LetsItselfGo>(loop, &slot, &freed);
  const LetsItselfGo* raw = slot.get();
  one_pass(loop);  // the timer fires: the callback lets the object go and goes on
  EXPECT_FALSE(slot);
  EXPECT_FALSE(freed);
  EXPECT_EQ(raw->calls_after_letting_go, 1);
  one_pass(loop);
  EXPECT_TRUE(freed);
}

TEST(Loop, DeletionsADeletedObjectDefersAreFreedToo) {
  bool outer_freed = false, inner_freed = false;
  struct Outer {
    Loop& loop;
    bool* inner_freed;
    Tracked tracked;
    ~Outer() { loop.defer_delete(std::make_unique<Tracked>(inner_freed)); }
  };
  {
    Loop loop;
    loop.defer_delete(std::unique_ptr<Outer>(new Outer{loop, &inner_freed, Tracked(&outer_freed)}));
    one_pass(loop);
    EXPECT_TRUE(outer_freed);
    EXPECT_FALSE(inner_freed);  // on the following pass, or when the loop goes (below)
  }
  EXPECT_TRUE(inner_freed);
}

TEST(Loop, ALoopFreesWhatIsStillOnItsListsWhenItGoes) {
  bool freed = false, captured_freed = false, ran = false;
  {
    Loop loop;
    loop.defer_delete(std::make_unique<Tracked>(&freed));
    auto captured = std::make_shared<Tracked>(&captured_freed);
    loop.defer([&ran, captured] { ran = true; });
  }
  EXPECT_TRUE(freed);
  EXPECT_TRUE(captured_freed);  // dropped, not run, and nothing leaks (LSan)
  EXPECT_FALSE(ran);
}

TEST(LifeToken, AWatchExpiresWithItsOwner) {
  struct Owner {
    LifeToken life;
  };
  auto owner = std::make_unique<Owner>();
  const auto watch = owner->life.watch();
  const auto copy = watch;
  EXPECT_FALSE(watch.expired());
  owner.reset();
  EXPECT_TRUE(watch.expired());
  EXPECT_TRUE(copy.expired());
}

TEST(LifeToken, EndExpiresTheWatchesBeforeTheOwnerGoes) {
  LifeToken life;
  const auto watch = life.watch();
  life.end();
  EXPECT_TRUE(watch.expired());
  EXPECT_TRUE(life.watch().expired());
}

TEST(Loop, OneTlsClientContextPerTlsConfig) {
  Loop loop;
  TlsConfig tls;
  tls.enabled = true;
  std::string why;
  SslCtxPtr a = loop.tls_client_context(tls, &why);
  ASSERT_TRUE(a) << why;
  SslCtxPtr b = loop.tls_client_context(tls, &why);
  EXPECT_EQ(a.get(), b.get());
  tls.verify = false;
  SslCtxPtr c = loop.tls_client_context(tls, &why);
  ASSERT_TRUE(c) << why;
  EXPECT_NE(a.get(), c.get());
  EXPECT_EQ(SSL_CTX_get_verify_mode(c.get()), SSL_VERIFY_NONE);
  EXPECT_EQ(SSL_CTX_get_verify_mode(a.get()), SSL_VERIFY_PEER);
  Loop other;
  SslCtxPtr d = other.tls_client_context(tls, &why);
  EXPECT_NE(c.get(), d.get());  // per loop, not per process
}

TEST(Loop, ATlsContextThatFailsIsNotKept) {
  Loop loop;
  TlsConfig tls;
  tls.enabled = true;
  tls.ca = "/nonexistent/ca.pem";
  std::string why;
  EXPECT_FALSE(loop.tls_client_context(tls, &why));
  EXPECT_NE(why.find("cannot load CA /nonexistent/ca.pem"), std::string::npos) << why;
  why.clear();
  EXPECT_FALSE(loop.tls_client_context(tls, &why));  // tried again, failing again
  EXPECT_NE(why.find("cannot load CA"), std::string::npos) << why;
}

TEST(Loop, OneResolverPerLoop) {
  Loop loop, other;
  evdns_base* dns = loop.resolver();
  ASSERT_NE(dns, nullptr);
  EXPECT_EQ(loop.resolver(), dns);
  EXPECT_NE(other.resolver(), dns);
}

TEST(Loop, TheClockIsMonotonicSeconds) {
  const double a = Loop::now();
  const auto t = Loop::Clock::now();
  const double b = Loop::now();
  EXPECT_LE(a, b);
  EXPECT_GE(Loop::seconds_since(t), 0);
  EXPECT_LT(Loop::seconds_since(t), 5);
}

TEST(ToTimeval, ClampsWhatATimerCannotHold) {
  EXPECT_EQ(to_timeval(1e300).tv_sec, static_cast<time_t>(1e9));
  EXPECT_EQ(to_timeval(std::nan("")).tv_sec, 0);
  EXPECT_EQ(to_timeval(-3).tv_sec, 0);
  EXPECT_EQ(to_timeval(1.25).tv_sec, 1);
  EXPECT_EQ(to_timeval(1.25).tv_usec, 250000);
}

}  // namespace
}  // namespace warren
