-- wrk script for the bench: POST the body in $BENCH_BODY_FILE as JSON (or with
-- the headers in $BENCH_HEADERS, one "Name: value" a line, which may override the
-- content type), count non-2xx answers per thread, and print one BENCH_JSON line
-- at the end with wrk's own latency distribution (microseconds).

local path = os.getenv("BENCH_BODY_FILE")
local file = assert(io.open(path, "rb"), "cannot open BENCH_BODY_FILE")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
for name, value in string.gmatch(os.getenv("BENCH_HEADERS") or "", "([^:\n]+):%s*([^\n]*)") do
   wrk.headers[name] = value
end

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   non2xx = 0
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   local non = 0
   for _, thread in ipairs(threads) do
      non = non + (thread:get("non2xx") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, ' ..
      '"write": %d, "timeout": %d, "status": %d, "non2xx": %d, ' ..
      '"p50_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
      e.status, non, latency:percentile(50), latency:percentile(99), latency.max,
      latency.mean))
end
