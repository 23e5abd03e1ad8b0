// One request and the answer it is owed: what a route is handed and answers through
// HttpServer. It lives until it is answered (or its stream ends), even when its client has
// gone meanwhile: the answer then only counts.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "handles.h"
#include "http/wire.h"

namespace warren {

class ServerConnection;

class Exchange : NonCopyable {
 public:
  std::string_view method() const { return request_.method; }
  // The path as sent, not decoded; "/" for an empty one.
  const std::string& path() const { return path_; }
  // The raw query string, "" without one.
  std::string_view query() const { return query_; }
  // The first header of that name, whatever its case; "" without one.
  std::string_view header(std::string_view name) const { return request_.header(name); }
  std::string_view body() const { return request_.body; }
  // The body, moved out: what the route keeps past its answer (a message held until its
  // confirm) is not held twice. body() is empty afterwards.
  std::string take_body() { return std::exchange(request_.body, {}); }
  // A header for the answer.
  void add_header(std::string name, std::string value) {
    out_headers_.emplace_back(std::move(name), std::move(value));
  }

 private:
  friend class HttpServer;
  friend class ServerConnection;

  http::WireRequest request_;
  std::string path_;
  std::string query_;
  std::vector<std::pair<std::string, std::string>> out_headers_;
  ServerConnection* conn_ = nullptr;  // nullptr once its connection is gone
  uint64_t seq_ = 0;              // its answer's number on the connection
  std::chrono::steady_clock::time_point started_;
  int stream_status_ = 0;         // the status of a stream under way
};

}  // namespace warren
