#include "forward/vcd_api.h"

#include <strings.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include <fmt/format.h>

#include "forward/format.h"
#include "json.h"
#include "log.h"

namespace warren::forward {
namespace {

using nlohmann::json;

constexpr const char* kSessionHeader = "x-vcloud-authorization";
constexpr const char* kAccessTokenHeader = "X-VMWARE-VCLOUD-ACCESS-TOKEN";

// A user's orgs are asked again after this long: a user removed from an org is refused soon.
constexpr double kOrgCacheSeconds = 30;
// Tokens remembered at most; past it the cache starts again (a flood of made-up tokens costs
// API calls, not memory).
constexpr size_t kOrgCacheEntries = 10000;
// The rights list is read this many at a time, and at most this many pages.
constexpr int kRightsPageSize = 128;
constexpr int kMaxRightsPages = 200;

// The last segment of an href ("https://vcd/api/org/1234" -> "1234").
std::string href_id(const std::string& href) {
  auto slash = href.find_last_of('/');
  return slash == std::string::npos ? href : href.substr(slash + 1);
}

}  // namespace

std::string vcd_text(const json& doc, const char* key) {
  if (!doc.is_object()) return "";
  auto it = doc.find(key);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : "";
}

long vcd_number(const json& doc, const char* key, long fallback) {
  if (!doc.is_object()) return fallback;
  auto it = doc.find(key);
  return it != doc.end() && it->is_number_integer() ? it->get<long>() : fallback;
}

json vcd_list(const json& doc, const char* key) {
  if (!doc.is_object()) return json::array();
  auto it = doc.find(key);
  return it != doc.end() && it->is_array() ? *it : json::array();
}

std::string_view urn_id(std::string_view urn, std::string_view prefix) {
  if (!urn.starts_with(prefix)) return urn;
  return urn.substr(urn.find_last_of(':') + 1);
}

bool is_right_id(std::string_view right) {
  if (right.starts_with("urn:")) return true;
  // 8-4-4-4-12 hex digits
  if (right.size() != 36) return false;
  for (size_t i = 0; i < right.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? right[i] != '-' : !std::isxdigit(static_cast<unsigned char>(right[i]))) return false;
  }
  return true;
}

bool holds_right(const std::vector<std::string>& held, std::string_view id) {
  // Two URNs must be equal; a bare id matches a URN's last part.
  return std::any_of(held.begin(), held.end(), [&](const std::string& r) {
    if (r.starts_with("urn:") && id.starts_with("urn:")) return r == id;
    return urn_id(r) == urn_id(id);
  });
}

std::optional<VcdChecks> vcd_checks_needed(const VcdConfig& vcd, const json& request, const json& context) {
  VcdChecks checks;
  for (const auto& right : vcd.required_rights)
    if (!is_right_id(right)) checks.right_names.push_back(right);
  checks.check_org = vcd.check_org_membership;
  if (checks.right_names.empty() && !checks.check_org) return std::nullopt;
  if (auto it = context.find("rights"); it != context.end() && it->is_array())
    for (const auto& r : *it)
      if (r.is_string()) checks.rights.push_back(r.get<std::string>());
  if (auto it = context.find("org"); it != context.end()) {
    const json& org = it->is_object() ? it->value("id", json()) : *it;
    if (org.is_string()) checks.org = org.get<std::string>();
  }
  // Sent to vCD as a header of its own: a value with CR or LF would add others, so it is none.
  if (auto token = vcd_request_header(request, "x-vcloud-authorization"); !token.empty()) {
    if (is_header_value(token)) {
      checks.token_header = "x-vcloud-authorization";
      checks.token = token;
    }
  } else if (auto bearer = vcd_request_header(request, "authorization");
             bearer.starts_with("Bearer ") && is_header_value(bearer)) {
    checks.token_header = "Authorization";
    checks.token = bearer;
  }
  return checks;
}

VcdApi::VcdApi(Loop& loop, HttpClient& http, const VcdApiConfig& config)
    : loop_(loop), http_(http), config_(config) {
  transport_.verify = config.verify;
  transport_.ca = config.ca;
  transport_.timeout = config.timeout;
  login_ = transport_;
  login_.username = config.username.find('@') == std::string::npos ? config.username + "@System" : config.username;
  login_.password = config.password;
  base_ = config.url;
  while (base_.ends_with('/')) base_.pop_back();
  accept_ = fmt::format("application/*+json;version={}", config.api_version);
}

VcdApi::~VcdApi() {
  life_.end();
  for (uint64_t id : requests_) http_.cancel(id);
}

// A path on the API, or an href vCD gave: only ever on vcd.api.url, so the session never goes
// anywhere else whatever a reply says.
std::optional<std::string> VcdApi::url_of(const std::string& target) const {
  if (target.starts_with("/")) return base_ + target;
  if (target.starts_with(base_ + "/")) return target;
  return std::nullopt;
}

void VcdApi::send(std::string method, std::string url, std::string content_type, std::string body,
                  std::vector<std::pair<std::string, std::string>> auth, Done done, bool login) {
  BackendRequest request;
  request.method = method;
  request.url = url;
  request.body = std::move(body);
  request.headers = std::move(auth);
  request.headers.emplace_back("Accept", accept_);
  if (!content_type.empty()) request.headers.emplace_back("Content-Type", content_type);
  // Only a login carries the administrator's password, and only its answer has tokens to read.
  if (login) request.response_headers = {kAccessTokenHeader, kSessionHeader};
  auto id = std::make_shared<uint64_t>(0);
  *id = http_.start(login ? login_ : transport_, std::move(request),
                    [this, id, what = fmt::format("{} {}", method, display_url(url)), done = std::move(done)](
                        BackendResponse&& r, double) {
                      requests_.erase(*id);
                      VcdReply reply;
                      reply.status = r.status;
                      reply.headers = std::move(r.headers);
                      if (!r.status) {
                        reply.problem = reply.error = r.error;
                      } else {
                        if (!r.body.empty()) reply.doc = json_parse(r.body);
                        if (reply.doc.is_discarded()) reply.doc = json();
                        if (!reply.ok()) reply.problem = fmt::format("{}: vCD answered {}", what, r.status);
                      }
                      done(std::move(reply));
                    });
  requests_.insert(*id);
}

void VcdApi::login(Waiter done) {
  login_waiters_.push_back(std::move(done));
  if (logging_in_) return;
  logging_in_ = true;
  session_.clear();
  ++logins_;
  send("POST", base_ + "/api/sessions", "", "", {}, [this](VcdReply&& r) {
    logging_in_ = false;
    std::string error = r.problem;
    // vCD 10 issues an access token to send as a Bearer; older ones only x-vcloud-authorization.
    if (auto t = r.headers.find(kAccessTokenHeader); r.ok() && t != r.headers.end())
      session_ = {{"Authorization", "Bearer " + t->second}};
    else if (auto x = r.headers.find(kSessionHeader); r.ok() && x != r.headers.end())
      session_ = {{kSessionHeader, x->second}};
    else if (r.ok())
      error = "POST /api/sessions: vCD answered without a session token";
    if (!error.empty())
      log_warning("vCD API {}: login as {} failed: {}", display_url(base_), login_.username, error);
    notify(std::exchange(login_waiters_, {}), error);
  }, true);
}

void VcdApi::admin(std::string method, const std::string& target, std::string content_type, std::string body,
                   Done done) {
  auto url = url_of(target);
  if (!url) {
    VcdReply r;
    r.problem = r.error = fmt::format("{} is not on vcd.api.url {}", display_url(target), display_url(base_));
    loop_.defer([alive = life_.watch(), done = std::move(done), r = std::move(r)]() mutable {
      if (!alive.expired()) done(std::move(r));
    });
    return;
  }
  send_admin(std::move(method), std::move(*url), std::move(content_type), std::move(body), false, std::move(done));
}

void VcdApi::send_admin(std::string method, std::string url, std::string content_type, std::string body,
                        bool again, Done done) {
  auto resend = [this, method, url, content_type, body, done](const std::string& error) mutable {
    if (!error.empty()) {
      VcdReply r;
      r.problem = r.error = error;
      return done(std::move(r));
    }
    send_admin(std::move(method), std::move(url), std::move(content_type), std::move(body), true, std::move(done));
  };
  if (session_.empty()) return login(std::move(resend));
  send(method, url, content_type, body, session_,
       [this, again, used = session_, resend = std::move(resend), done = std::move(done)](VcdReply&& r) mutable {
         if (r.status != 401 || again) return done(std::move(r));
         // The session expired (or vCD forgot it): a new one, and the request once more. Another
         // request may have renewed it meanwhile: then only the request again.
         if (!session_.empty() && session_ != used) return resend("");
         login(std::move(resend));
       });
}

void VcdApi::check(const VcdChecks& checks, Verdict done) {
  // An outage is logged once when it starts and once when it ends, not once per request.
  Verdict noted = [this, done = std::move(done)](VcdVerdict v, std::string why) {
    const bool down = v == VcdVerdict::unavailable;
    if (down && !down_)
      log_warning("vCD API {}: {}; vcd requests are answered 503 until it answers", display_url(base_), why);
    if (!down && down_) log_info("vCD API {} answers again", display_url(base_));
    down_ = down;
    done(v, std::move(why));
  };
  // The org first: it is the user's own fact; then the rights, which every user shares.
  if (!checks.check_org) return check_rights(checks, std::move(noted));
  check_org(checks, [this, checks, noted = std::move(noted)](VcdVerdict v, std::string why) mutable {
    if (v != VcdVerdict::pass) return noted(v, std::move(why));
    check_rights(checks, std::move(noted));
  });
}

void VcdApi::check_rights(const VcdChecks& checks, Verdict done) {
  auto verdict = [this, checks, done](const std::string& error) {
    if (!error.empty()) return done(VcdVerdict::unavailable, "the vCD API could not list the rights: " + error);
    for (const auto& name : checks.right_names) {
      auto it = right_ids_.find(name);
      if (it == right_ids_.end()) {
        log_warning("vCD API {}: no right is named \"{}\" (vcd.required_rights)", display_url(base_), name);
        return done(VcdVerdict::refused, fmt::format("the right \"{}\" does not exist in vCD", name));
      }
      if (!holds_right(checks.rights, it->second))
        return done(VcdVerdict::refused, fmt::format("the user lacks the right \"{}\" ({})", name, it->second));
    }
    done(VcdVerdict::pass, "");
  };
  if (checks.right_names.empty() || Loop::now() < rights_expire_) {
    // From the cache: still answered from the loop, never inside the caller's frame.
    return loop_.defer([alive = life_.watch(), verdict] {
      if (!alive.expired()) verdict("");
    });
  }
  load_rights(std::move(verdict));
}

void VcdApi::load_rights(Waiter done) {
  rights_waiters_.push_back(std::move(done));
  if (rights_loading_) return;
  rights_loading_ = true;
  rights_pending_.clear();
  load_rights_page(1);
}

// The rights query, page after page: name -> URN (a record's id, else its href's last part).
void VcdApi::load_rights_page(int page) {
  admin("GET", fmt::format("/api/query?type=right&format=records&page={}&pageSize={}", page, kRightsPageSize), "", "",
        [this, page](VcdReply&& r) {
          if (!r.ok()) return finish_rights(r.problem);
          const json records = vcd_list(r.doc, "record");
          for (const auto& rec : records) {
            std::string name = vcd_text(rec, "name"), id = vcd_text(rec, "id"), href = vcd_text(rec, "href");
            if (id.empty() && !href.empty()) id = "urn:vcloud:right:" + href_id(href);
            if (!name.empty() && !id.empty()) rights_pending_[name] = id;
          }
          // vCD may page by less than asked (its maxPageSize): the answer says the size it used.
          const long total = vcd_number(r.doc, "total", 0), size = vcd_number(r.doc, "pageSize", kRightsPageSize);
          if (!records.empty() && size > 0 && page < kMaxRightsPages && page * size < total)
            return load_rights_page(page + 1);
          right_ids_ = std::move(rights_pending_);
          rights_expire_ = Loop::now() + config_.cache_ttl;
          finish_rights("");
        });
}

void VcdApi::finish_rights(const std::string& error) {
  rights_loading_ = false;
  rights_pending_.clear();
  notify(std::exchange(rights_waiters_, {}), error);
}

// Runs each waiter of a shared step (a login, the rights list) with its outcome, unless one of
// them destroyed the client.
void VcdApi::notify(std::vector<Waiter> waiters, const std::string& error) {
  const auto alive = life_.watch();
  for (auto& w : waiters) {
    if (alive.expired()) return;
    w(error);
  }
}

void VcdApi::check_org(const VcdChecks& checks, Verdict done) {
  if (checks.token.empty())
    return loop_.defer([alive = life_.watch(), done] {
      if (!alive.expired())
        done(VcdVerdict::refused,
             "the request carries no user token (x-vcloud-authorization or Authorization: Bearer) to check the "
             "user's organization");
    });
  const std::string org(urn_id(checks.org));
  auto verdict = [org, done](const std::set<std::string>& orgs) {
    if (orgs.count(org)) return done(VcdVerdict::pass, "");
    done(VcdVerdict::refused, fmt::format("the user is not a member of the organization {}", org));
  };
  if (auto it = orgs_.find(checks.token); it != orgs_.end() && Loop::now() < it->second.expires)
    return loop_.defer([alive = life_.watch(), verdict, orgs = it->second.orgs] {
      if (!alive.expired()) verdict(orgs);
    });
  user_orgs(checks.token_header, checks.token, [this, token = checks.token, verdict, done](VcdReply&& r) {
    if (r.status == 401 || r.status == 403)
      return done(VcdVerdict::refused, "vCD refused the user's token (GET /api/org answered " +
                                           std::to_string(r.status) + ")");
    if (!r.ok())
      return done(VcdVerdict::unavailable, "the vCD API could not list the user's organizations: " + r.problem);
    OrgEntry entry;
    entry.expires = Loop::now() + kOrgCacheSeconds;
    for (const auto& o : vcd_list(r.doc, "org"))
      if (auto href = vcd_text(o, "href"); !href.empty()) entry.orgs.insert(href_id(href));
    if (orgs_.size() >= kOrgCacheEntries) orgs_.clear();
    const auto orgs = entry.orgs;
    orgs_[token] = std::move(entry);
    verdict(orgs);
  });
}

// GET /api/org with the user's own token: the orgs that user belongs to.
void VcdApi::user_orgs(const std::string& header, const std::string& token, std::function<void(VcdReply&&)> done) {
  send("GET", base_ + "/api/org", "", "", {{header, token}}, std::move(done));
}

}  // namespace warren::forward
