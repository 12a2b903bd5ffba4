-- wrk script for bench/run.
--
--   wrk ... -s bench/wrk.lua http://127.0.0.1:PORT -- get  NFILES
--   wrk ... -s bench/wrk.lua http://127.0.0.1:PORT -- head NFILES
--   wrk ... -s bench/wrk.lua http://127.0.0.1:PORT -- put  BODYFILE BASE
--
-- get/head: request /<id> with id drawn uniformly from 1..NFILES (pre-populated).
-- put: PUT a fresh id on every request: BASE + thread_number * 10^7 + counter,
--      body = contents of BODYFILE (Content-Type: application/octet-stream).
-- done() prints one machine-readable line starting with "BENCH " (latencies in us).

local threads = {}
local thread_no = 0

function setup(thread)
   thread_no = thread_no + 1
   thread:set("tno", thread_no)
   table.insert(threads, thread)
end

local mode, nfiles, body, base
local counter = 0
local put_headers = { ["Content-Type"] = "application/octet-stream" }

function init(args)
   mode = args[1] or "get"
   if mode == "put" then
      local f = assert(io.open(args[2], "rb"))
      body = f:read("*a")
      f:close()
      base = tonumber(args[3] or "1000000000")
   else
      nfiles = tonumber(args[2] or "1")
      math.randomseed(os.time() + (tno or 0) * 7919)
   end
end

function request()
   if mode == "put" then
      counter = counter + 1
      local id = base + tno * 10000000 + counter
      return wrk.format("PUT", string.format("/%d", id), put_headers, body)
   end
   local id = math.random(1, nfiles)
   if mode == "head" then
      return wrk.format("HEAD", "/" .. id)
   end
   return wrk.format("GET", "/" .. id)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d bytes=%d rps=%.1f p50_us=%d p99_us=%d mean_us=%.0f max_us=%d " ..
      "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      summary.requests, summary.duration, summary.bytes,
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
