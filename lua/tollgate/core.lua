-- tollgate.core: the C functions Lua reaches through the FFI, and the
-- constants shared with the C side (runtime/bridge.h, runtime/req.h).
-- Keep the declarations here in step with runtime/*.h; spec/01-unit
-- checks that every declared symbol resolves in the binary.

local ffi = require "ffi"

ffi.cdef [[
typedef struct tg_req tg_req_t;
typedef struct tg_peer tg_peer_t;

tg_req_t *tg_lua_current(void);
int tg_req_method(tg_req_t *r);
const char *tg_req_method_name(tg_req_t *r, size_t *len);
const char *tg_req_target(tg_req_t *r, size_t *len);
const char *tg_req_path(tg_req_t *r, size_t *len);
const char *tg_req_query(tg_req_t *r, size_t *len);
const char *tg_req_host(tg_req_t *r, size_t *len);
int tg_req_http_version(tg_req_t *r);
const char *tg_req_client_ip(tg_req_t *r, size_t *len);
const char *tg_req_id(tg_req_t *r, size_t *len);
double tg_req_start_time(tg_req_t *r);
const char *tg_req_scheme(tg_req_t *r);
int tg_req_tls_verified(tg_req_t *r);
const char *tg_hdr_get(tg_req_t *r, int which, const char *name, size_t len, size_t *vlen);
int tg_hdr_edit(tg_req_t *r, int which, int op, const char *name, size_t len,
                const char *value, size_t vlen);
int tg_hdr_edit_int(tg_req_t *r, int which, int op, const char *name, size_t len, int64_t v);
int tg_hdr_next(tg_req_t *r, int which, int i, const char **name, size_t *nlen,
                const char **value, size_t *vlen);
int tg_resp_status(tg_req_t *r);
void tg_resp_set_status(tg_req_t *r, int status);
void tg_resp_set_body(tg_req_t *r, const char *body, size_t len);
void tg_req_set_route(tg_req_t *r, const char *name, size_t len);
int tg_req_proxy(tg_req_t *r, tg_peer_t *peer, const char *target, size_t len,
                 int flags, double timeout);
const char *tg_req_proxy_error(tg_req_t *r);
void tg_req_proxy_failed(tg_req_t *r);
int tg_req_sleep(tg_req_t *r, double seconds);
int tg_req_read_body(tg_req_t *r);
const char *tg_req_body(tg_req_t *r, size_t *len);
int tg_req_set_body(tg_req_t *r, const char *p, size_t len);
int tg_resp_read_body(tg_req_t *r);
const char *tg_resp_body(tg_req_t *r, size_t *len);

typedef struct tg_tls_client tg_tls_client_t;
tg_peer_t *tg_peer_get(const char *host, size_t len, int port, tg_tls_client_t *tls);
tg_tls_client_t *tg_tls_client_get(int verify, const char *ca_file, const char *cert,
                                   const char *key, char *err, size_t errlen);

void tg_req_set_error(tg_req_t *r, const char *msg, size_t len);

typedef struct tg_jwt_key tg_jwt_key_t;
typedef struct tg_jwt_opts {
    int algorithms;
    double leeway;
    const char *audience;
    const char *issuer;
} tg_jwt_opts_t;
typedef struct tg_jwt_result {
    int reason;
    int alg;
    const char *claims;
    size_t claims_len;
    double exp;
} tg_jwt_result_t;
tg_jwt_key_t *tg_jwt_key_new(const char *material, size_t len, const char *kid,
                             char *err, size_t errlen);
void tg_jwt_key_free(tg_jwt_key_t *k);
int tg_jwt_key_algs(const tg_jwt_key_t *k);
int tg_jwt_verify(tg_jwt_key_t **keys, int nkeys, const char *token, size_t len,
                  const tg_jwt_opts_t *opts, double now, tg_jwt_result_t *out);
const char *tg_jwt_reason_text(int reason);
tg_jwt_key_t *tg_jwt_key_from_jwk(const char *kty, const char *crv, const char *n,
                                  const char *e, const char *x, const char *y, const char *k,
                                  const char *kid, const char *alg, char *err, size_t errlen);

int tg_shdict_incr(const char *key, size_t klen, double by, double init, double ttl,
                   double *value, double *ttl_left);
int tg_shdict_get(const char *key, size_t klen, double *num, char *buf, size_t *len,
                  int *is_str, double *ttl_left);
int tg_shdict_set(const char *key, size_t klen, double num, const char *str,
                  size_t slen, double ttl);
int tg_shdict_delete(const char *key, size_t klen);
void tg_shdict_stats(double *used, double *capacity, double *evicted);
void tg_shdict_advance(double seconds);

int tg_shdict_init(size_t bytes, const char **err);

tg_req_t *tg_test_request(const char *raw, size_t len, const char *client, char *err,
                          size_t errlen);
void tg_test_request_free(tg_req_t *r);
const char *tg_test_upstream_request(tg_req_t *r, size_t *len);
int tg_test_upstream_response(tg_req_t *r, const char *raw, size_t len);
const char *tg_test_response(tg_req_t *r, size_t *len);
tg_req_t *tg_test_pending_call(tg_req_t *r);
void tg_test_call_done(tg_req_t *call, int status);
void tg_test_collect(void);

void *tg_rx_find(const char *key, size_t len);
void *tg_rx_add(const char *key, size_t len, void *code);
int tg_rx_release(void *code);
int tg_rx_jit(void *code, void *compile, uint32_t options); /* compile: PCRE2's jit compile */

tg_req_t *tg_call_new(tg_req_t *parent, tg_peer_t *peer, const char *raw, size_t len,
                      double timeout, char *err, size_t errlen);
int tg_call_status(tg_req_t *call, const char **reason);
void tg_call_free(tg_req_t *call);
void *tg_timer_start(tg_req_t *r, double after, double every, int id);
void tg_timer_stop(void *handle);

double tg_now(void);
int tg_worker_id(void);
void tg_log_line(int level, const char *msg);
]]

local _M = {

    -- enum tg_yield
    YIELD_DONE = 0,
    YIELD_WAIT = 1,
    YIELD_PROXY = 2,
    YIELD_RESPOND = 3,

    -- which header list
    REQUEST = 0,
    RESPONSE = 1,

    -- enum tg_hedit_op
    HDR_SET = 0,
    HDR_ADD = 1,
    HDR_DEL = 2,

    -- tg_req_proxy() flags
    PROXY_CHANGE_ORIGIN = 1,
    PROXY_XFWD = 2,
    PROXY_WS = 4,
    PROXY_LAST = 8,

    -- return codes
    OK = 0,
    ERROR = -1,
    AGAIN = -2,
    DECLINED = -5,

    -- log levels (enum tg_log_level)
    LOG_ERROR = 0,
    LOG_WARN = 1,
    LOG_INFO = 2,
    LOG_DEBUG = 3,

    -- the FFI symbols above, for the spec that checks they resolve
    SYMBOLS = {
        "tg_req_method", "tg_req_method_name", "tg_req_target", "tg_req_path",
        "tg_req_query", "tg_req_host", "tg_req_http_version", "tg_req_client_ip",
        "tg_req_id", "tg_req_start_time", "tg_req_scheme", "tg_req_tls_verified",
        "tg_hdr_get", "tg_hdr_edit", "tg_hdr_edit_int", "tg_hdr_next",
        "tg_resp_status", "tg_resp_set_status", "tg_resp_set_body", "tg_req_set_route",
        "tg_req_proxy", "tg_req_proxy_error", "tg_req_proxy_failed", "tg_req_sleep", "tg_peer_get", "tg_now",
        "tg_tls_client_get", "tg_call_new", "tg_call_status", "tg_call_free",
        "tg_timer_start", "tg_timer_stop",
        "tg_req_read_body", "tg_req_body", "tg_req_set_body", "tg_resp_read_body", "tg_resp_body",
        "tg_worker_id", "tg_log_line", "tg_req_set_error",
        "tg_jwt_key_new", "tg_jwt_key_free", "tg_jwt_key_algs", "tg_jwt_verify",
        "tg_jwt_reason_text", "tg_jwt_key_from_jwk",
        "tg_shdict_incr", "tg_shdict_get", "tg_shdict_set", "tg_shdict_delete",
        "tg_shdict_stats", "tg_shdict_init", "tg_shdict_advance",
        "tg_test_request", "tg_test_request_free", "tg_test_upstream_request",
        "tg_test_upstream_response", "tg_test_response", "tg_test_pending_call",
        "tg_test_call_done", "tg_test_collect",
        "tg_rx_find", "tg_rx_add", "tg_rx_release", "tg_rx_jit",
    },
}

-- Inside the gateway binary the C functions are the executable's own.
-- Anywhere else (busted, a user's spec) the same C core is loaded from
-- libtollgate.so: $TOLLGATE_LIB, or build/ beside lua/, or the install
-- prefix; JWT verification and the shared dictionary then run the real
-- code, while request functions (which need a worker) are unused.
_M.in_gateway = pcall(function() return ffi.C.tg_now end)
if _M.in_gateway then
    _M.C = ffi.C
    _M.has_c = true
else
    local src = debug.getinfo(1, "S").source
    local here = src:match("^@(.*)/lua/tollgate/core%.lua$") or
        (src:match("^@lua/tollgate/core%.lua$") and ".")
    -- a build tree (build/) or an installation (make install: lib/)
    local candidates = { os.getenv("TOLLGATE_LIB"), here and (here .. "/build/libtollgate.so"),
        here and (here .. "/lib/libtollgate.so"), "/usr/local/share/tollgate/lib/libtollgate.so" }
    for _, path in pairs(candidates) do
        local ok, lib = pcall(ffi.load, path)
        if ok then
            _M.C = lib
            _M.has_c = true
            _M.lib_path = path
            break
        end
    end
    _M.home = here
    if _M.has_c then
        local err = ffi.new("const char *[1]")
        if _M.C.tg_shdict_init(16 * 1024 * 1024, err) ~= 0 then
            error("tollgate.core: shared dictionary: " .. ffi.string(err[0]))
        end
    else
        _M.C = setmetatable({}, { __index = function(_, name)
            error("tollgate.core: " .. name .. " needs the C core: build it (make) or set " ..
                "TOLLGATE_LIB to libtollgate.so", 2)
        end })
    end
end

-- The request (or timer run) the running coroutine serves, so that Lua
-- code can make calls without passing it around (tollgate.http, timers):
-- the one C resumed (tg_lua_current), or for coroutines the test kit
-- drives, the one it set in contexts.
_M.contexts = setmetatable({}, { __mode = "k" })

function _M.context()
    local r = _M.contexts[coroutine.running()]
    if r == nil and _M.in_gateway then r = _M.C.tg_lua_current() end
    return r
end

-- The time (Unix seconds) policies use; the test kit can replace it.
function _M.now()
    return _M.C.tg_now()
end

local function log(level, msg)
    if _M.in_gateway then
        ffi.C.tg_log_line(level, msg)
    else
        io.stderr:write(msg, "\n")
    end
end

function _M.log_error(msg) log(_M.LOG_ERROR, msg) end
function _M.log_warn(msg) log(_M.LOG_WARN, msg) end
function _M.log_info(msg) log(_M.LOG_INFO, msg) end

return _M
