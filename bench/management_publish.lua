-- wrk script: RabbitMQ's management HTTP API publish, the usual "HTTP to AMQP" alternative.
--   wrk -s bench/management_publish.lua http://127.0.0.1:MGMT/api/exchanges/%2F/amq.default/publish \
--       -- QUEUE [USER PASSWORD]
-- The same message as bench/publish.lua: 100-byte body, the same delivery_mode, default exchange.
-- The API answers 200 {"routed":true}; it does not wait for a confirm.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local report = dofile(here .. "wrk_report.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  local queue = args[1] or "warren-bench"
  wrk.body = '{"properties":{"delivery_mode":' .. report.delivery_mode .. '},"routing_key":"' ..
             queue .. '","payload":"' .. string.rep("x", 100) .. '","payload_encoding":"string"}'
  wrk.headers["Authorization"] = report.basic_auth(args[2] or "guest", args[3] or "guest")
end

done = report.done
