// GET /: a live dashboard page, plain HTML, CSS and JS served by warrend itself. It polls /stats.
#pragma once

namespace warren {

class HttpServer;

void dashboard_routes(HttpServer& server);

}  // namespace warren
