#include "http/outcome.h"

namespace warren {

HttpOutcome http_outcome(core::PublishStatus status) {
  using core::PublishStatus;
  switch (status) {
    case PublishStatus::confirmed: return {204, ""};
    case PublishStatus::unroutable: return {422, "unroutable"};
    case PublishStatus::refused: return {401, "unauthorized"};
    case PublishStatus::forbidden: return {403, "access refused"};
    case PublishStatus::not_found: return {404, "not found"};
    case PublishStatus::invalid: return {400, "bad message"};
    case PublishStatus::rejected: return {503, "rejected by the broker"};
    case PublishStatus::unavailable: return {503, "broker unavailable"};
    case PublishStatus::over_limit: return {503, "too many broker connections"};
    case PublishStatus::timeout: return {504, "no confirm"};
  }
  return {500, "internal error"};  // an enum value outside the list
}

}  // namespace warren
