// Phase 3 of reading the configuration: what YAML types cannot say. The table's limits (ranges,
// choices, required strings) row by row, then the rules across keys: ports listed once, TLS
// files readable, a certificate with its key, a forwarder's format with what it needs.
#include "config_check.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "config_table.h"
#include "forward/backend_url.h"
#include "forward/rewrite.h"
#include "forward/vcd_checks.h"

namespace warren {

void ConfigReport::error(int line, std::string key, std::string problem) {
  errors_.push_back({file_, line, std::move(key), std::move(problem)});
}

void ConfigReport::error_at(const std::string& key, std::string problem) {
  error(line_of(key), key, std::move(problem));
}

int ConfigReport::line_of(std::string key) const {
  while (!key.empty()) {
    if (auto it = lines_.find(key); it != lines_.end()) return it->second;
    size_t cut = key.find_last_of(".[");
    key.resize(cut == std::string::npos ? 0 : cut);
  }
  return 0;
}

std::vector<ConfigError> ConfigReport::take_errors() && {
  std::stable_sort(errors_.begin(), errors_.end(),
                   [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
  return std::move(errors_);
}

namespace {

class Checker {
 public:
  Checker(Config& config, const std::set<size_t>& unchecked_forwarders, ConfigReport& report)
      : config_(config), unchecked_forwarders_(unchecked_forwarders), report_(report) {}

  void check() {
    for (const auto& row : config_rows()) check_row_everywhere(row);
    check_ports_listed_once();
    check_broker();
    check_body_buffer();
    if (config_.rpc.max_timeout < config_.rpc.timeout)
      report_.error_at("rpc.max_timeout",
                       fmt::format("must be at least rpc.timeout ({})", config_.rpc.timeout));
    std::map<std::string, size_t> names;  // forwarder name -> its index
    for (size_t i = 0; i < config_.forwarders.size(); ++i)
      if (!unchecked_forwarders_.count(i)) check_forwarder(i, names);
  }

 private:
  // A body of http.max_body must fit in the bodies a worker reads at once. Said at the key the
  // file gives: raising max_body alone past the default buffer names the buffer to raise too.
  void check_body_buffer() {
    const HttpConfig& http = config_.http;
    if (http.max_body_buffer >= http.max_body) return;
    if (report_.is_given("http.max_body_buffer"))
      report_.error_at("http.max_body_buffer", fmt::format("must be at least http.max_body ({})", http.max_body));
    else
      report_.error_at("http.max_body", fmt::format("is over http.max_body_buffer ({}): raise that too",
                                                    http.max_body_buffer));
  }

  // ---- the table's limits

  // A global row once; a forwarders[] row in every forwarder.
  void check_row_everywhere(const KeyRow& row) {
    if (!is_forwarder_row(row)) {
      check_row(row, std::string(row.key), ConfigTarget{&config_, nullptr});
      return;
    }
    std::string_view rest = row.key.substr(kForwarderPrefix.size());
    for (size_t i = 0; i < config_.forwarders.size(); ++i)
      if (!unchecked_forwarders_.count(i))
        check_row(row, fmt::format("forwarders[{}].{}", i, rest),
                  ConfigTarget{&config_, &config_.forwarders[i]});
  }

  void check_row(const KeyRow& row, const std::string& path, ConfigTarget t) {
    std::visit(
        [&](auto ref) {
          const auto& member = ref(t);
          using T = std::decay_t<decltype(member)>;
          if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
            check_range(row, path, static_cast<double>(member));
          } else if constexpr (std::is_same_v<T, std::vector<int>>) {
            for (size_t i = 0; i < member.size(); ++i)
              check_range(row, fmt::format("{}[{}]", path, i), member[i]);
          } else if constexpr (std::is_same_v<T, std::string>) {
            check_string(row, path, member);
          }
        },
        row.field);
  }

  void check_range(const KeyRow& row, const std::string& path, double v) {
    if (v >= row.min && v <= row.max) return;
    std::string want = row.max == kConfigNoLimit
                           ? fmt::format("must be at least {}", row.min)
                           : fmt::format("must be between {} and {}", row.min, row.max);
    report_.error_at(path, fmt::format("{}, got {}", want, v));
  }

  void check_string(const KeyRow& row, const std::string& path, const std::string& v) {
    if (row.required && v.empty()) {
      report_.error_at(path, report_.is_given(path) ? "may not be empty" : "is required");
      return;
    }
    if (row.choices.empty()) return;
    const auto choices = split_choices(row.choices);
    if (std::find(choices.begin(), choices.end(), v) == choices.end()) report_.error_at(path, not_a_choice(choices, v));
  }

  // ---- rules across keys

  void check_ports_listed_once() {
    const auto& ports = config_.http.ports;
    for (size_t i = 0; i < ports.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (ports[i] == ports[j])
          report_.error_at(fmt::format("http.ports[{}]", i),
                           fmt::format("port {} is listed twice", ports[i]));
  }

  void check_broker() {
    const auto& broker = config_.broker;
    if (broker.hosts.empty() && !report_.is_given("broker.hosts[0]"))
      report_.error_at("broker.hosts", "needs at least one host");
    if (broker.tls.enabled) {
      check_file("broker.tls.ca", broker.tls.ca);
      check_file("broker.tls.cert", broker.tls.cert);
      check_file("broker.tls.key", broker.tls.key);
    }
    check_pair("broker.tls", broker.tls.cert, broker.tls.key);
  }

  void check_forwarder(size_t i, std::map<std::string, size_t>& names) {
    const auto& f = config_.forwarders[i];
    std::string p = fmt::format("forwarders[{}]", i);
    if (!f.name.empty() && !names.emplace(f.name, i).second)
      report_.error_at(p + ".name", fmt::format("\"{}\" is also the name of forwarders[{}]", f.name,
                                                names[f.name]));
    if (f.format == ForwarderFormat::oslo) {
      if (f.oslo.topic.empty()) report_.error_at(p + ".oslo.topic", "is required with format oslo");
    } else if (f.queue.empty()) {
      report_.error_at(p + ".queue", "is required");
    }
    if (f.format == ForwarderFormat::vcd && f.vcd.extension.empty())
      report_.error_at(p + ".vcd.extension", "is required with format vcd");
    if (f.format == ForwarderFormat::vcd) check_vcd_api(p, f);
    check_backend(p, f.backend);
    if (!f.rewrite_from.empty())
      if (auto problem = forward::Rewrite::check(f.rewrite_from))
        report_.error_at(p + ".rewrite.from", fmt::format("bad regular expression \"{}\": {}",
                                                          f.rewrite_from, *problem));
    if (f.retry.max_delay < f.retry.initial_delay)
      report_.error_at(
          p + ".retry.max_delay",
          fmt::format("must be at least retry.initial_delay ({})", f.retry.initial_delay));
    if (!f.declare.bindings.empty() && f.declare.exchange_name.empty())
      report_.error_at(p + ".declare.bindings",
                       "needs declare.exchange.name (the exchange to bind the queue to)");
  }

  // What needs vcd.api (a right given by name, org membership, deploy: auto) and what deploy
  // registers (the exchange vCD publishes to).
  void check_vcd_api(const std::string& p, const ForwarderConfig& f) {
    const VcdApiConfig& api = f.vcd.api;
    const bool has_api = !api.url.empty();
    if (has_api) {
      if (auto problem = forward::backend_url_problem(api.url)) report_.error_at(p + ".vcd.api.url", *problem);
      check_file(p + ".vcd.api.ca", api.ca);
    }
    for (size_t k = 0; k < f.vcd.required_rights.size() && !has_api; ++k)
      if (!forward::is_right_id(f.vcd.required_rights[k]))
        report_.error_at(fmt::format("{}.vcd.required_rights[{}]", p, k),
                         fmt::format("\"{}\" is a right name (not a URN or UUID): resolving it needs vcd.api.url",
                                     f.vcd.required_rights[k]));
    if (f.vcd.check_org_membership && !has_api)
      report_.error_at(p + ".vcd.check_org_membership", "needs vcd.api.url (vCD says which orgs a user is in)");
    if (f.vcd.deploy == "auto" && !has_api)
      report_.error_at(p + ".vcd.deploy", "auto needs vcd.api.url (the extension is registered through it)");
    if (f.vcd.deploy == "auto" && f.declare.exchange_name.empty())
      report_.error_at(p + ".vcd.deploy",
                       "auto needs declare.exchange.name (the exchange vCD publishes the extension's requests to)");
  }

  void check_backend(const std::string& forwarder, const BackendConfig& backend) {
    if (!backend.url.empty())
      if (auto problem = forward::backend_url_problem(backend.url))
        report_.error_at(forwarder + ".backend.url", *problem);
    check_file(forwarder + ".backend.ca", backend.ca);
    check_file(forwarder + ".backend.cert", backend.cert);
    check_file(forwarder + ".backend.key", backend.key);
    check_pair(forwarder + ".backend", backend.cert, backend.key);
  }

  void check_file(const std::string& path, const std::string& file) {
    if (file.empty() || ::access(file.c_str(), R_OK) == 0) return;
    report_.error_at(path, fmt::format("cannot read \"{}\": {}", file, std::strerror(errno)));
  }

  // A client certificate needs its key and the other way round.
  void check_pair(const std::string& prefix, const std::string& cert, const std::string& key) {
    if (cert.empty() == key.empty()) return;
    std::string missing = prefix + (cert.empty() ? ".cert" : ".key");
    std::string given = prefix + (cert.empty() ? ".key" : ".cert");
    report_.error(report_.line_of(given), missing, fmt::format("is required with {}", given));
  }

  Config& config_;
  const std::set<size_t>& unchecked_forwarders_;
  ConfigReport& report_;
};

}  // namespace

void config_check(Config& config, const std::set<size_t>& unchecked_forwarders,
                  ConfigReport& report) {
  Checker(config, unchecked_forwarders, report).check();
}

}  // namespace warren
