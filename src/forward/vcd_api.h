// A client of vCloud Director's own API (forwarders[].vcd.api) on a worker's HttpClient, so it
// never blocks the loop: a System administrator's session as vCD issues it (POST /api/sessions;
// the X-VMWARE-VCLOUD-ACCESS-TOKEN as a Bearer token, else x-vcloud-authorization), opened on
// first use and again, once, when vCD answers 401; the System org's rights list (right names ->
// URNs), cached for vcd.api.cache_ttl; the orgs a user's own token belongs to (GET /api/org),
// cached briefly per token. On that: the checks of forward/vcd_checks.h, and the calls
// `warrenctl vcd` and `vcd.deploy: auto` make (forward/vcd_deploy.h).
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.h"
#include "forward/http_client.h"
#include "forward/vcd_checks.h"
#include "handles.h"
#include "loop.h"

namespace warren::forward {

// One API answer. status 0: none came (`error` says why); body parsed into `doc` when JSON.
struct VcdReply {
  int status = 0;
  std::string error;
  nlohmann::json doc;
  std::map<std::string, std::string> headers;  // a login's token headers
  bool ok() const { return status >= 200 && status < 300; }
  // "GET /api/org: 500" or the transport error, for logs and answers.
  std::string problem;
};

// Members of a vCD answer, which is outside input: the wrong type is as good as absent (nlohmann's
// value() would throw, inside a curl callback).
std::string vcd_text(const nlohmann::json& doc, const char* key);          // "" unless a string
long vcd_number(const nlohmann::json& doc, const char* key, long fallback);  // unless an integer
nlohmann::json vcd_list(const nlohmann::json& doc, const char* key);       // [] unless an array

enum class VcdVerdict { pass, refused, unavailable };

class VcdApi : NonCopyable {
 public:
  using Done = std::function<void(VcdReply&&)>;
  using Verdict = std::function<void(VcdVerdict, std::string why)>;

  // `http` and `config` must outlive the client. Callbacks run from the loop, never inside the
  // call that asked, and never after the client is gone.
  VcdApi(Loop& loop, HttpClient& http, const VcdApiConfig& config);
  ~VcdApi();

  // A request as the System administrator. `target` is a path ("/api/...") or an href vCD gave
  // (it must be on vcd.api.url). Logs in first when there is no session; a 401 logs in again
  // and repeats the request once.
  void admin(std::string method, const std::string& target, std::string content_type, std::string body,
             Done done);
  // Runs `checks`; `done` says pass, refused (403: why names the check) or unavailable (503).
  void check(const VcdChecks& checks, Verdict done);

  const VcdApiConfig& config() const { return config_; }
  size_t logins() const { return logins_; }

 private:
  struct OrgEntry {
    std::set<std::string> orgs;  // org ids (the last part of each href)
    double expires = 0;
  };
  // Waits for a step other requests may share (a login, the rights list): "" it went well,
  // else why not.
  using Waiter = std::function<void(const std::string& error)>;

  // One request with `auth` headers (the session's, a user's); `login`: the administrator's
  // Basic credentials instead, and the answer's token headers kept.
  void send(std::string method, std::string url, std::string content_type, std::string body,
            std::vector<std::pair<std::string, std::string>> auth, Done done, bool login = false);
  void send_admin(std::string method, std::string url, std::string content_type, std::string body, bool again,
                  Done done);
  void login(Waiter done);
  void load_rights(Waiter done);
  void load_rights_page(int page);
  void finish_rights(const std::string& error);
  void notify(std::vector<Waiter> waiters, const std::string& error);
  void check_rights(const VcdChecks& checks, Verdict done);
  void check_org(const VcdChecks& checks, Verdict done);
  void user_orgs(const std::string& header, const std::string& token, std::function<void(VcdReply&&)> done);
  std::optional<std::string> url_of(const std::string& target) const;

  Loop& loop_;
  HttpClient& http_;
  const VcdApiConfig& config_;
  BackendConfig transport_;  // TLS and timeout for every request
  BackendConfig login_;      // the same with the administrator's Basic credentials
  std::string base_;         // vcd.api.url without a trailing '/'
  std::string accept_;

  std::vector<std::pair<std::string, std::string>> session_;  // the header(s) that carry it
  bool logging_in_ = false;
  std::vector<Waiter> login_waiters_;
  size_t logins_ = 0;

  std::map<std::string, std::string> right_ids_;  // name -> URN
  double rights_expire_ = 0;
  bool rights_loading_ = false;
  std::map<std::string, std::string> rights_pending_;  // the list being read
  std::vector<Waiter> rights_waiters_;

  std::map<std::string, OrgEntry> orgs_;  // by the user's token
  std::set<uint64_t> requests_;           // under way, cancelled with the client
  bool down_ = false;                     // the last check could not be answered
  LifeToken life_;
};

}  // namespace warren::forward
