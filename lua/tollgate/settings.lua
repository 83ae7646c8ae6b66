-- tollgate.settings: the `tollgate:` section of gateway.config.yml, for
-- what Express Gateway has no setting for. Every key is optional. A timeout
-- of 0 is no timeout (shutdownTimeout: 0 cuts requests in flight at once).
--
--   tollgate:
--     workers: auto            # worker processes; a number or "auto" (one per core)
--     accessLog: stdout        # stdout, stderr, off, or a file path
--     logLevel: info           # error, warn, info, debug
--     shutdownTimeout: 10000   # ms a graceful stop waits for requests in flight
--     reloadTimeout: 30000     # ms a reload's build may take; a longer one is given up
--                              # (the previous configuration serves on)
--     policyPaths: [lib/policies]   # more directories with Lua policies
--     watch: true              # reload when the config or a file it uses changes
--     pidFile: /run/tollgate.pid   # where `tollgate reload` finds the master
--                              # (default: $XDG_RUNTIME_DIR or /tmp, named after the config)
--     sharedMemory: 16m        # the shared dictionary (rate-limit counters...):
--                              # bytes, or with k/m/g; 256 bytes an entry
--     client:
--       headTimeout: 60000     # ms for a whole request head (408 after)
--       bodyTimeout: 60000     # ms between two reads of a request body (408)
--       keepaliveTimeout: 60000  # ms an idle keep-alive connection stays open
--       sendTimeout: 60000     # ms a client may stall reading a response
--       tunnelTimeout: 300000  # ms a WebSocket may stay silent both ways
--       maxHeadSize: 32768     # bytes of request line + headers (431 above)
--       maxBodySize: 0         # bytes of request body, 0 = no limit (413 above)
--       maxBufferedBody: 8388608  # bytes of a body a policy reads whole (413 / 502 above)
--       maxConnections: 16384  # open client connections per worker
--       maxKeepaliveRequests: 10000  # requests on one connection before it closes
--     upstream:
--       connectTimeout: 10000  # ms
--       timeout: 60000         # ms of upstream inactivity (proxyTimeout overrides)
--       keepalive: 64          # idle connections kept per upstream per worker
--       keepaliveTimeout: 4000 # ms an idle upstream connection is kept; keep it
--                              # below the upstream's own (Node's default is 5 s)

local schema = require "tollgate.schema"

local _M = {}

local function ms(default, description)
    return { type = "number", minimum = 0, default = default, description = description }
end

local CLIENT = { properties = {
    headTimeout = ms(60000, "ms to receive a whole request head"),
    bodyTimeout = ms(60000, "ms between two reads of a request body"),
    keepaliveTimeout = ms(60000, "ms an idle keep-alive connection is kept"),
    sendTimeout = ms(60000, "ms a client may stall reading a response"),
    tunnelTimeout = ms(300000, "ms a WebSocket may stay silent in both directions"),
    maxHeadSize = { type = "integer", minimum = 1024, maximum = 1048576, default = 32768,
        description = "bytes of request line and headers" },
    maxBodySize = { type = "number", minimum = 0, default = 0,
        description = "bytes of request body (0: no limit)" },
    maxBufferedBody = { type = "integer", minimum = 0, default = 8388608,
        description = "bytes of a request or response body a policy reads whole" },
    maxConnections = { type = "integer", minimum = 1, default = 16384,
        description = "open client connections per worker" },
    maxKeepaliveRequests = { type = "integer", minimum = 0, default = 10000,
        description = "requests served on one connection (0: no limit)" },
} }

local UPSTREAM = { properties = {
    connectTimeout = ms(10000, "ms to connect to an upstream"),
    timeout = ms(60000, "ms of upstream inactivity"),
    keepalive = { type = "integer", minimum = 0, default = 64,
        description = "idle connections kept per upstream per worker" },
    keepaliveTimeout = ms(4000, "ms an idle upstream connection is kept"),
} }

local SCHEMA = { properties = {
    workers = { type = { "integer", "string" }, default = "auto",
        description = "worker processes, or auto for one per core" },
    accessLog = { type = "string", default = "stdout",
        description = "stdout, stderr, off, or a file path" },
    logLevel = { type = "string", enum = { "error", "warn", "info", "debug" }, default = "info",
        description = "error log verbosity" },
    shutdownTimeout = ms(10000, "ms a graceful stop waits for requests in flight"),
    reloadTimeout = ms(30000, "ms a reload's build may take before it is given up"),
    policyPaths = { type = "array", items = { type = "string" },
        description = "directories searched for Lua policies" },
    watch = { type = "boolean", default = true,
        description = "reload when the config or a file it uses changes" },
    pidFile = { type = "string", description = "where `tollgate reload` finds the master" },
    sharedMemory = { type = { "number", "string" }, default = "16m",
        description = "size of the shared dictionary: bytes, or a number with k, m or g" },
    client = { type = "object", additional = true, description = "client-side limits" },
    upstream = { type = "object", additional = true, description = "upstream connections" },
} }

local LEVELS = { error = 0, warn = 1, info = 2, debug = 3 }

-- Returns the settings table the C core reads (seconds, bytes), or nil,
-- message, at.
function _M.parse(section, http, https)
    local conf, err, at = schema.validate(SCHEMA, section, "tollgate")
    if not conf then return nil, err, at end
    local client, cerr, cat = schema.validate(CLIENT, conf.client or {}, "tollgate.client")
    if not client then return nil, cerr, cat end
    local up, uerr, uat = schema.validate(UPSTREAM, conf.upstream or {}, "tollgate.upstream")
    if not up then return nil, uerr, uat end

    local workers = conf.workers
    if workers == "auto" then
        workers = 0
    elseif type(workers) ~= "number" or workers < 1 then
        return nil, "tollgate.workers: expected a number of workers or \"auto\"",
            { section, "workers" }
    end

    local shm = conf.sharedMemory
    if type(shm) == "string" then
        local n, unit = shm:lower():match("^%s*(%d+)%s*([kmg]?)b?%s*$")
        if not n then
            return nil, "tollgate.sharedMemory: expected a size such as 16m, got \"" .. shm .. "\"",
                { section, "sharedMemory" }
        end
        shm = tonumber(n) * ({ [""] = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3 })[unit]
    end
    if shm < 65536 then
        return nil, "tollgate.sharedMemory: at least 64k", { section, "sharedMemory" }
    end

    local listen = {}
    if http then
        listen[#listen + 1] = { host = http.hostname, port = http.port }
    end
    local tls
    if https then
        listen[#listen + 1] = { host = https.hostname, port = https.port, tls = true }
        tls = { certs = https.certs, request_cert = https.request_cert or false,
            reject_unauthorized = https.reject_unauthorized or false }
    end
    return {
        workers = workers,
        listen = listen,
        access_log = conf.accessLog,
        log_level = LEVELS[conf.logLevel],
        shared_memory = shm,
        tls = tls,
        watch = conf.watch,
        pid_file = conf.pidFile,
        shutdown_timeout = conf.shutdownTimeout / 1000,
        reload_timeout = conf.reloadTimeout / 1000,
        policy_paths = conf.policyPaths,
        head_timeout = client.headTimeout / 1000,
        body_timeout = client.bodyTimeout / 1000,
        keepalive_timeout = client.keepaliveTimeout / 1000,
        send_timeout = client.sendTimeout / 1000,
        tunnel_timeout = client.tunnelTimeout / 1000,
        max_head_size = client.maxHeadSize,
        max_body_size = client.maxBodySize,
        max_buffered_body = client.maxBufferedBody,
        max_connections = client.maxConnections,
        max_keepalive_requests = client.maxKeepaliveRequests,
        upstream_connect_timeout = up.connectTimeout / 1000,
        upstream_timeout = up.timeout / 1000,
        upstream_keepalive = up.keepalive,
        upstream_idle_timeout = up.keepaliveTimeout / 1000,
    }
end

return _M
