---@meta
--- perf_manual._c.http (runtime/http.c): the open-loop HTTP/1.1 load
--- generator behind `red-check`. Use it through perf_manual.http, which
--- parses URLs and builds the request.
error('perf_manual._c.http: this file only describes the C API')

local http = {}

---@class perf_manual.http.Opts
---@field host string
---@field port string
---@field request string
---@field rate number?
---@field connections integer?
---@field duration number?
---@field timeout number?
---@field head boolean?
---@field tls boolean?
---@field cacert string?
---@field insecure boolean?
---@field ip_host boolean?

--- Sends `request` (the whole bytes) for `duration` seconds over keep-alive
--- connections. rate > 0: open loop, request i due at start + i/rate, latency
--- counted from that due time; rate = 0: closed loop (each connection sends
--- again when answered). Blocks until done or a stop was requested (Ctrl-C).
--- head: the request is HEAD (answers have no body). tls: https, the
--- certificate verified against cacert (PEM file) or the system store unless
--- insecure, and naming host (a DNS name, also the SNI) or, with ip_host, the
--- address host; new connections resume the newest session.
---@param opts perf_manual.http.Opts
---@return table? result  -- elapsed, issue_time, asked_rate, connections, sent, responses, due,
---                       -- backlog, unfinished, connects, connects_ok, last_error?,
---                       -- status = {['1xx'..'5xx']}, errors = {connect, timeout, read, parse, closed, tls?},
---                       -- tls? = {handshakes, handshakes_ok, resumed, verified, version?, cipher?, last_error?},
---                       -- latency? = {min, max, mean, p50, p75, p90, p99, ['p99.9'], ['p99.99']} (seconds),
---                       -- histogram? = {{lo, hi, count}, ...} (seconds),
---                       -- series = {{t, responses, errors, lat_log2_us = {32 counts}}, ...}
---@return string? err  -- "resolve HOST: reason", or the reason of a kind below
---@return string? kind  -- "fd_limit" (more connections than open files), "tls" (a cacert that does not load)
function http.run(opts) end

--- Parses a response fed as `chunks` (as reads would cut it); for specs.
---@param chunks string[]
---@param head boolean? the answer to a HEAD request
---@return {status: integer, body: number, close: boolean, used: number, left_over: integer}?, string? err
function http._parse(chunks, head) end

--- Percentiles of values (microseconds) through the histogram alone; for specs.
---@param values number[]
---@return {p50: number, p90: number, p99: number, ['p99.9']: number, min: number, max: number, buckets: integer}
function http._hist(values) end

--- The quantile rule of the load generator's histogram (pm_quantile) on
--- perf_manual.hist buckets, so specs can hold hist.quantile to it. min and
--- max are the exact extremes when known; without them, the lo of the first
--- non-empty bucket and the hi of the last (its lo when open).
--- Errors: q outside [0, 1], a bucket that is not {lo=, hi=, count=} with a
--- whole count >= 0.
---@param buckets {lo: number, hi: number, count: number, open: boolean?}[]
---@param q number 0..1
---@param min number?
---@param max number?
---@return number? value  -- nil when the buckets are empty
function http.hist_quantile(buckets, q, min, max) end

return http
