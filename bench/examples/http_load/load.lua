-- The load of `http_load`: POSTs of one ~200-byte JSON body.
--
-- Arguments (after `--`): the mode, `same` (every request carries the key
-- given as the prefix: replays) or `fresh` (a new key per request: first
-- runs); the key or key prefix; the body; then any session cookies, used in
-- turn.
-- Every scenario goes through this same `request` function, so the load
-- generator does the same work per request whichever route it drives.

local threads = {}
local counter = 0
local fresh, prefix, cookies, headers

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

function init(args)
   fresh = args[1] == "fresh"
   prefix = args[2] .. "-" .. tostring(tid)
   if not fresh then
      prefix = args[2]
   end
   cookies = {}
   for i = 4, #args do
      cookies[#cookies + 1] = args[i]
   end
   headers = {
      ["Content-Type"] = "application/json",
      ["Host"] = wrk.host,
   }
   wrk.method = "POST"
   wrk.body = args[3]
end

function request()
   local key = prefix
   counter = counter + 1
   if fresh then
      key = prefix .. "-" .. counter
   end
   headers["Idempotency-Key"] = '"' .. key .. '"'
   if #cookies > 0 then
      headers["Cookie"] = cookies[counter % #cookies + 1]
   end
   return wrk.format(nil, nil, headers, wrk.body)
end

-- One line for the runner; latencies in microseconds.
function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d status=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d\n",
      summary.requests, summary.duration, errors.status, errors.connect, errors.read,
      errors.write, errors.timeout, latency:percentile(50), latency:percentile(99)))
end
