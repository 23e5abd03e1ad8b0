// The checks of a vcd request that only vCloud Director's API can answer (forward/vcd_api.h
// runs them): required rights given by name, and the user's membership of the context's org.
// format_vcd.cc finds what a request needs (pure); the HTTP backend runs it before forwarding.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.h"

namespace warren::forward {

struct BackendResponse;

struct VcdChecks {
  std::vector<std::string> right_names;  // vcd.required_rights given by name
  std::vector<std::string> rights;       // the request's context.rights (URNs)
  bool check_org = false;                // vcd.check_org_membership
  std::string org;                       // context.org (a URN or a bare id)
  // The user's own credentials from the request's headers, presented to vCD as they came:
  // x-vcloud-authorization, or Authorization (Bearer). Empty: the request carried none.
  std::string token_header, token;
};

// What `request` and `context` (a [request, context] message) still need checked through the
// API under `vcd`; nullopt when nothing does.
std::optional<VcdChecks> vcd_checks_needed(const VcdConfig& vcd, const nlohmann::json& request,
                                           const nlohmann::json& context);

// The last part of a URN that starts with `prefix` ("urn:vcloud:org:1234" -> "1234"); anything
// else as it is: a bare id, or with a narrower prefix, a URN of another type.
std::string_view urn_id(std::string_view urn, std::string_view prefix = "urn:");

// The value of header `name` in a vCD request's headers object, case-insensitively: the first
// of a list (as some vCD versions send every header), for a credential is one value; "" when
// absent.
std::string vcd_request_header(const nlohmann::json& request, std::string_view name);

// A vcd.required_rights entry that is a right's id (a URN, or a bare UUID as vcdextproxy took
// from an href), checked against context.rights as it is; anything else is a right's name, for
// the vCD API to resolve.
bool is_right_id(std::string_view right);
// `held` (context.rights) has the right `id`, as a URN or a bare id.
bool holds_right(const std::vector<std::string>& held, std::string_view id);

// warren's own answer to a vCD request, in vCD's error document (format_vcd.cc).
BackendResponse vcd_error_response(int status, std::string_view minor, std::string_view message);

}  // namespace warren::forward
