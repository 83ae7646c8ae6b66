-- tollgate.router: apiEndpoints matching, as Express Gateway matches them,
-- built once per config so a request looks at a handful of candidates,
-- not at every endpoint.
--
-- Semantics (Express Gateway 1.16: vhost 3 + Express 4 router):
--   host       exact, "*" (any, also no Host), "*.company.com" (one label per
--              "*"); port stripped; case-insensitive. hostRegex: a regex,
--              anchored, case-insensitive.
--   paths      "/a" (also "/a/"), "/a/*" (not "/a"), "/a/:id", lists of them,
--              case-insensitive, path-to-regexp 0.1.7 syntax; matched against
--              the raw path without the query. No paths: everything.
--   pathRegex  a regex, unanchored, case-sensitive (as RegExp(str) is).
--   methods    a list or "GET,POST" or "*"; GET also answers HEAD.
--   order      declaration order (each path of an endpoint in list order);
--              the first route that matches wins.
--
-- Index: routes are bucketed by host (exact name, wildcard pattern, any) and,
-- within a host bucket, by the first path segment when the pattern starts
-- with a literal one. A request merges at most a few bucket lists in
-- declaration order and tests only those routes.

local regex = require "tollgate.regex"

local ipairs, setmetatable = ipairs, setmetatable
local concat = table.concat
local lower, upper, find, sub, gsub, byte = string.lower, string.upper, string.find,
    string.sub, string.gsub, string.byte
local insert = table.insert

local _M = {}
local Router = {}
Router.__index = Router

local EMPTY = {}

-- ---- path patterns ---------------------------------------------------------

-- path-to-regexp 0.1.7, as Express 4 compiles route paths (sensitive=false,
-- strict=false, end=true). Returns the regex source and the keys of its
-- capture groups in order: a name for ":name", or 0, 1, ... for unnamed
-- groups ("*" and bare "(...)"), as Express fills req.params.
local MARK = "\1"

local function path_to_pcre(path)
    local s = "^" .. path .. ((sub(path, -1) == "/") and "?" or "/?")
    s = gsub(s, "/%(", "/(?:")
    s = gsub(s, "([/%.])", "\\%1")

    -- (\/)?(\.)?:(\w+)(\(.*?\))?(\*)?(\?)?  -> a named capture
    local out, n = {}, 0
    local i, len = 1, #s
    while i <= len do
        local c = sub(s, i, i)
        local name, e = nil, nil
        if c == ":" then name, e = s:match("^([%w_]+)()", i + 1) end
        if name then
            local prev = table.concat(out, "", 1, n)
            local format, slash = "", ""
            if sub(prev, -2) == "\\." then format = "\\."; prev = sub(prev, 1, -3) end
            if sub(prev, -2) == "\\/" then slash = "\\/"; prev = sub(prev, 1, -3) end
            local capture = s:match("^(%(.-%))", e)
            if capture then e = e + #capture end
            local star = sub(s, e, e) == "*"
            if star then e = e + 1 end
            local optional = sub(s, e, e) == "?"
            if optional then e = e + 1 end
            capture = capture or ("([^\\/" .. format .. "]+?)")
            out = { prev }
            n = 1
            n = n + 1
            out[n] = (optional and "" or slash) .. "(?:" .. format .. (optional and slash or "") ..
                MARK .. name .. MARK .. capture ..
                (star and ("((?:[\\/" .. format .. "].+?)?)") or "") .. ")" .. (optional and "?" or "")
            i = e
        else
            n = n + 1
            out[n] = c == "*" and "(.*)" or c
            i = i + 1
        end
    end
    s = table.concat(out, "", 1, n) .. "$"

    -- Number the capture groups; strip the name marks.
    local keys, clean, k = {}, {}, 0
    local pending
    local j = 1
    while j <= #s do
        local ch = sub(s, j, j)
        if ch == MARK then
            local close = find(s, MARK, j + 1, true)
            pending = sub(s, j + 1, close - 1)
            j = close + 1
        elseif ch == "\\" then
            clean[#clean + 1] = sub(s, j, j + 1)
            j = j + 2
        else
            if ch == "(" and sub(s, j + 1, j + 1) ~= "?" then
                if pending then
                    keys[#keys + 1] = pending
                    pending = nil
                else
                    keys[#keys + 1] = k
                    k = k + 1
                end
            end
            clean[#clean + 1] = ch
            j = j + 1
        end
    end
    return table.concat(clean), keys
end

local SPECIAL_BYTE = {}
for c in ("*:()?+[]$^\\|{}"):gmatch(".") do SPECIAL_BYTE[byte(c)] = true end

-- Does path pattern p have a character with a meaning (one of *:()?+[]$^\|{})?
-- A loop over the bytes: a reload builds thousands of path patterns, and a
-- search with a Lua pattern costs several times more.
local function has_special(p)
    for i = 1, #p do
        if SPECIAL_BYTE[byte(p, i)] then return true end
    end
    return false
end

-- Compiles one path of an endpoint into a matcher:
--   kind "all"    everything; params[0] = the path
--   kind "exact"  a literal path, with or without a trailing slash
--   kind "prefix" "<literal>/*": params[0] = the rest
--   kind "regex"  anything else (params from the groups)
local function compile_path(p)
    if p == "*" then
        return { kind = "all" }
    end
    if not has_special(p) then
        local lp = lower(p)
        if sub(lp, -1) == "/" and #lp > 1 then lp = sub(lp, 1, -2) end
        return { kind = "exact", path = lp, path_slash = lp .. "/" }
    end
    local pre = p:match("^(.-)/%*$")
    if pre and not has_special(pre) then
        return { kind = "prefix", prefix = lower(pre) .. "/" }
    end
    local src, keys = path_to_pcre(p)
    local re, err = regex.compile(src, "i")
    if not re then return nil, err end
    return { kind = "regex", re = re, keys = keys }
end

-- The literal first segment of a path pattern, lower-cased, or nil when the
-- pattern can match more than one first segment.
local function first_segment(p)
    if sub(p, 1, 1) ~= "/" then return nil end
    local seg = p:match("^/([^/]*)")
    if seg == "" or has_special(seg) then return nil end
    -- "/a" matches "/a/" too, and "/a/*" needs "/a/", so the segment is exact
    return lower(seg)
end

-- ---- host patterns ----------------------------------------------------------

local function host_pattern(h)
    -- vhost: escape, then each "*" is one label; anchored; case-insensitive
    local p = gsub(lower(h), "[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0")
    p = gsub(p, "%*", "[^.]+")
    return "^" .. p .. "$"
end

local function strip_port(host)
    if not host then return nil end
    if byte(host, 1) == 91 then -- "[v6]:port"
        local v6 = host:match("^(%b[])")
        return v6 and lower(v6) or lower(host)
    end
    local colon = find(host, ":", 1, true)
    if colon then host = sub(host, 1, colon - 1) end
    return lower(host)
end
_M.strip_port = strip_port

-- ---- building ------------------------------------------------------------------

local function new_bucket()
    return { segs = {}, wild = {} }
end

local function bucket_add(b, route)
    local seg = route.segment
    if seg then
        local list = b.segs[seg]
        if not list then list = {}; b.segs[seg] = list end
        list[#list + 1] = route
    else
        b.wild[#b.wild + 1] = route
    end
end

-- endpoints: list of { name, host, hostRegex, paths (list), pathRegex,
-- methods (list or nil), pipeline, ... } in declaration order.
function _M.new(endpoints)
    local self = setmetatable({
        exact = {},        -- host name -> bucket
        patterns = {},     -- { match = fn(hostname), bucket }
        any = new_bucket(),
        routes = {},
    }, Router)
    local n = 0
    for _, ep in ipairs(endpoints) do
        local methods, allow
        if ep.methods then
            -- Express: one route per method in list order; a GET route also
            -- answers HEAD and lists it right after its own methods
            methods, allow = {}, {}
            for _, m in ipairs(ep.methods) do
                m = upper(m)
                if not methods[m] then allow[#allow + 1] = m end
                methods[m] = true
            end
            if methods.GET and not methods.HEAD then
                methods.HEAD = true
                allow[#allow + 1] = "HEAD"
            end
        end
        local bucket
        if ep.hostRegex then
            local src = ep.hostRegex
            if sub(src, 1, 1) ~= "^" then src = "^" .. src end
            if sub(src, -1) ~= "$" then src = src .. "$" end
            local re, err = regex.compile(src, "i")
            if not re then return nil, err, ep, "hostRegex" end
            bucket = new_bucket()
            insert(self.patterns, { test = function(h) return h ~= nil and re:test(h) end,
                bucket = bucket })
        elseif ep.host == nil or ep.host == "*" then
            bucket = self.any
        elseif find(ep.host, "*", 1, true) then
            local pat = host_pattern(ep.host)
            for _, hp in ipairs(self.patterns) do
                if hp.source == pat then bucket = hp.bucket end
            end
            if not bucket then
                bucket = new_bucket()
                insert(self.patterns, { source = pat, bucket = bucket,
                    test = function(h) return h ~= nil and find(h, pat) ~= nil end })
            end
        else
            local h = lower(ep.host)
            bucket = self.exact[h]
            if not bucket then bucket = new_bucket(); self.exact[h] = bucket end
        end

        local paths = ep.paths
        if ep.pathRegex then
            local re, err = regex.compile(ep.pathRegex)
            if not re then return nil, err, ep, "pathRegex" end
            n = n + 1
            local route = { index = n, endpoint = ep, methods = methods, allow = allow,
                m = { kind = "regex", re = re }, path = ep.pathRegex }
            self.routes[n] = route
            bucket_add(bucket, route)
        else
            if not paths or #paths == 0 then paths = { "*" } end
            for _, p in ipairs(paths) do
                local m, err = compile_path(p)
                if not m then return nil, err, ep, "paths" end
                n = n + 1
                local route = { index = n, endpoint = ep, methods = methods, allow = allow,
                    m = m, path = p,
                    segment = m.kind ~= "all" and first_segment(p) or nil }
                self.routes[n] = route
                bucket_add(bucket, route)
            end
        end
    end
    return self
end

-- ---- matching -------------------------------------------------------------------

local function hexchar(h)
    return string.char(tonumber(h, 16))
end

local function decode(s)
    if not find(s, "%", 1, true) then return s end
    return (gsub(s, "%%(%x%x)", hexchar))
end

-- Does route r's path pattern match? Returns params (a table, possibly
-- empty) or nil. lpath is the lower-cased path.
local function match_path(m, path, lpath)
    local kind = m.kind
    if kind == "exact" then
        if lpath == m.path or lpath == m.path_slash then return EMPTY end
        return nil
    elseif kind == "prefix" then
        local pre = m.prefix
        if sub(lpath, 1, #pre) == pre then
            return { [0] = decode(sub(path, #pre + 1)), raw0 = sub(path, #pre + 1) }
        end
        return nil
    elseif kind == "all" then
        return { [0] = decode(path), raw0 = path }
    end
    local cap = m.re:exec(path)
    if not cap then return nil end
    local keys = m.keys
    local params = {}
    for i = 1, #cap do
        local key = keys and keys[i] or (i - 1)
        if cap[i] then
            params[key] = decode(cap[i])
            if key == 0 then params.raw0 = cap[i] end
        end
    end
    return params
end

local function lists_for(bucket, seg, out, k)
    local l = seg and bucket.segs[seg]
    if l then k = k + 1; out[k] = l end
    if #bucket.wild > 0 then k = k + 1; out[k] = bucket.wild end
    return k
end

local lists = {}
local cursors = {}

-- OPTIONS on a path whose routes want other methods: Express lists the
-- methods of every such route, each once, in route order.
local function add_allow(allow, route)
    allow = allow or {}
    for _, m in ipairs(route.allow) do
        if not allow[m] then
            allow[m] = true
            allow[#allow + 1] = m
        end
    end
    return allow
end

-- The first route of one candidate list after index `after` that matches.
-- The usual case, the list's first route, is checked without entering a
-- loop: a loop that is entered but never turns is never compiled by itself,
-- and a request's trace that enters it is aborted (LuaJIT "inner loop in
-- root trace"), leaving the whole request interpreted.
local function match_list(l, path, lpath, method, after)
    local start = 1
    local first = l[1]
    if first and first.index > after and (not first.methods or first.methods[method]) then
        local params = match_path(first.m, path, lpath)
        if params then return first, params end
        start = 2 -- its path does not match: it adds nothing to an OPTIONS answer either
    end
    local allow
    for c = start, #l do
        local r = l[c]
        if r.index > after then
            local params = match_path(r.m, path, lpath)
            if params then
                if not r.methods or r.methods[method] then return r, params end
                if method == "OPTIONS" then allow = add_allow(allow, r) end
            end
        end
    end
    if allow then return nil, concat(allow, ",") end
    return nil
end

-- Finds the first route after index `after` (default 0) that matches.
-- Returns route, params; or nil, allow when only the method differed for an
-- OPTIONS request (allow = "GET,HEAD,..." as Express answers it).
function Router:match(host, path, method, after)
    after = after or 0
    local hostname = strip_port(host)
    local lpath = lower(path)
    -- the first segment (what follows "/" up to the next "/"); string.find
    -- with plain = true and string.sub are compiled, a pattern match would
    -- end the request's trace here
    local seg
    if byte(lpath, 1) == 47 then
        local e = find(lpath, "/", 2, true)
        seg = sub(lpath, 2, e and e - 1 or -1)
    end

    local k = 0
    local b = hostname and self.exact[hostname]
    if b then k = lists_for(b, seg, lists, k) end
    local patterns = self.patterns
    for i = 1, #patterns do
        local hp = patterns[i]
        if hp.test(hostname) then k = lists_for(hp.bucket, seg, lists, k) end
    end
    k = lists_for(self.any, seg, lists, k)
    if k <= 1 then
        -- one candidate list (the usual case): no merging
        local l = lists[1]
        if not l then return nil end
        lists[1] = nil
        return match_list(l, path, lpath, method, after)
    end
    for i = 1, k do cursors[i] = 1 end

    local allow
    while true do
        -- the next route in declaration order across the candidate lists
        local best, bi = nil, 0
        for i = 1, k do
            local l, c = lists[i], cursors[i]
            local r = l[c]
            while r and r.index <= after do c = c + 1; r = l[c] end
            cursors[i] = c
            if r and (not best or r.index < best.index) then best, bi = r, i end
        end
        if not best then break end
        cursors[bi] = cursors[bi] + 1
        local params = match_path(best.m, path, lpath)
        if params then
            if not best.methods or best.methods[method] then
                for i = 1, k do lists[i] = nil end
                return best, params
            end
            if method == "OPTIONS" then allow = add_allow(allow, best) end
        end
    end
    for i = 1, k do lists[i] = nil end
    if allow then
        return nil, concat(allow, ",")
    end
    return nil
end

_M.path_to_pcre = path_to_pcre
_M.compile_path = compile_path

return _M
