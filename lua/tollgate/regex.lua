-- tollgate.regex: JavaScript-style regular expressions for the parts of
-- Express Gateway's config that take them (pathRegex, hostRegex, the
-- pathMatch condition). Lua patterns are not regular expressions, so this
-- uses PCRE2 (Debian's libpcre2-8-0) through the FFI; its syntax covers
-- what those configs use (classes, groups, alternation, anchors, \d \w).
--
--   local re, err = regex.compile("^/api/v[0-9]+", "i")
--   local m = re:exec(subject)          -- nil, or { [0] = whole, [1] = group 1, ... }
--   local ok = re:test(subject)

local ffi = require "ffi"

ffi.cdef [[
typedef struct pcre2_real_code_8 pcre2_code_8;
typedef struct pcre2_real_match_data_8 pcre2_match_data_8;
pcre2_code_8 *pcre2_compile_8(const unsigned char *pattern, size_t length, uint32_t options,
                              int *errorcode, size_t *erroroffset, void *ccontext);
void pcre2_code_free_8(pcre2_code_8 *code);
int pcre2_jit_compile_8(pcre2_code_8 *code, uint32_t options);
pcre2_match_data_8 *pcre2_match_data_create_from_pattern_8(const pcre2_code_8 *code, void *gcontext);
void pcre2_match_data_free_8(pcre2_match_data_8 *match_data);
int pcre2_match_8(const pcre2_code_8 *code, const unsigned char *subject, size_t length,
                  size_t startoffset, uint32_t options, pcre2_match_data_8 *match_data,
                  void *mcontext);
size_t *pcre2_get_ovector_pointer_8(pcre2_match_data_8 *match_data);
int pcre2_get_error_message_8(int errorcode, unsigned char *buffer, size_t bufflen);
]]

local lib = ffi.load("libpcre2-8.so.0")
-- compiled patterns kept per process across generations (runtime/rxcache.c)
local core = require "tollgate.core"
local C = core.has_c and core.C or nil

local PCRE2_CASELESS = 0x00000008
local PCRE2_UTF = 0x00080000
local PCRE2_JIT_COMPLETE = 0x00000001
local PCRE2_ERROR_NOMATCH = -1

local sub = string.sub

local _M = {}
local Regex = {}
Regex.__index = Regex

local errcode = ffi.new("int[1]")
local erroff = ffi.new("size_t[1]")
local msgbuf = ffi.new("unsigned char[256]")

-- JIT-compile patterns (off while the master only checks a config: PCRE2
-- keeps freed JIT memory cached, and nothing is matched there)
_M.jit = true

local function release(code)
    if C.tg_rx_release(code) ~= 0 then lib.pcre2_code_free_8(code) end
end

-- A pattern is JIT-compiled when it is first used, not when the config
-- loads: a reload compiles hundreds of patterns (pathMatch conditions, path
-- parameters) of which a request uses a few, and JIT compiling is most of a
-- pattern's cost. Until then the object has no `code` field; reading it
-- (test, exec, or a caller's own pcre2_match) compiles, sets it, and gives
-- the object the plain metatable, so later uses cost nothing extra.
local jit_compile = ffi.cast("void *", lib.pcre2_jit_compile_8)
local Lazy = {}
Lazy.__index = function(self, k)
    if k ~= "code" then return Regex[k] end
    local code = rawget(self, "pcode")
    if C then -- once per shared code, locked: another generation may have, or be at it
        C.tg_rx_jit(code, jit_compile, PCRE2_JIT_COMPLETE)
    else
        lib.pcre2_jit_compile_8(code, PCRE2_JIT_COMPLETE)
    end
    self.code = code
    setmetatable(self, Regex)
    return code
end

function _M.compile(pattern, flags)
    local opts = 0
    if flags and flags:find("i", 1, true) then opts = opts + PCRE2_CASELESS end
    if flags and flags:find("u", 1, true) then opts = opts + PCRE2_UTF end
    local key = opts .. "/" .. pattern
    local code
    if C then code = C.tg_rx_find(key, #key) end
    if code == nil then
        local fresh = lib.pcre2_compile_8(pattern, #pattern, opts, errcode, erroff, nil)
        if fresh == nil then
            lib.pcre2_get_error_message_8(errcode[0], msgbuf, 256)
            return nil, "invalid regular expression /" .. pattern .. "/: " ..
                ffi.string(msgbuf) .. " at offset " .. tonumber(erroff[0])
        end
        code = fresh
        if C then
            code = C.tg_rx_add(key, #key, fresh)
            if code ~= fresh then lib.pcre2_code_free_8(fresh) end
        end
    end
    code = ffi.gc(ffi.cast("pcre2_code_8 *", code), C and release or lib.pcre2_code_free_8)
    local md = ffi.gc(lib.pcre2_match_data_create_from_pattern_8(code, nil),
        lib.pcre2_match_data_free_8)
    if not _M.jit then -- the interpreter (a check-only load never matches)
        return setmetatable({ code = code, md = md, source = pattern }, Regex)
    end
    return setmetatable({ pcode = code, md = md, source = pattern }, Lazy)
end

-- True when the pattern matches anywhere in s (JavaScript's RegExp.test).
function Regex:test(s)
    return lib.pcre2_match_8(self.code, s, #s, 0, 0, self.md, nil) >= 0
end

-- The match and its groups, or nil. Unset groups are false.
function Regex:exec(s)
    local rc = lib.pcre2_match_8(self.code, s, #s, 0, 0, self.md, nil)
    if rc < 0 then
        if rc ~= PCRE2_ERROR_NOMATCH then return nil end
        return nil
    end
    local ov = lib.pcre2_get_ovector_pointer_8(self.md)
    local m = {}
    for i = 0, rc - 1 do
        local a, b = ov[2 * i], ov[2 * i + 1]
        if a == ffi.cast("size_t", -1) then
            m[i] = false
        else
            m[i] = sub(s, tonumber(a) + 1, tonumber(b))
        end
    end
    return m
end

return _M
