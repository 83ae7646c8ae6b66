-- rewrite: changes the request URL, or redirects the client, by pattern.
-- The semantics of the express-gateway-plugin-rewrite plugin, whose two
-- conditions this policy also provides (declaring `rewrite` in `policies:`
-- registers them):
--
--   - rewrite:
--       - condition:
--           name: pathmatch              # an Express path; :name captures
--           match: /tina/:code
--         action:
--           rewrite: /status/:code
--           redirect: 302                # a redirect: 302 Found, Location: /status/...
--       - condition:
--           name: regexpmatch            # a regular expression
--           match: ^/js/(.*)$
--         action:
--           rewrite: /src/js/$1          # the URL becomes /src/js/..., and the pipeline goes on
--
-- Conditions, tested against the request URL (path and query):
--   pathmatch    match: an Express path (path-to-regexp 2: :name, :name?,
--                :name*, :name+, :name(\\d+), (regex); case-insensitive, an
--                optional trailing slash, anchored at both ends). The named
--                values it captures fill :name in `rewrite`.
--   regexpmatch  match: a regular expression (PCRE; JavaScript syntax for what
--                configs use). `rewrite` replaces the first match in the URL,
--                as String.replace: $1..$99, $& (the match), $` and $' (what
--                precedes and follows it), $$ ("$").
-- The step's condition must be one of these two (directly, or inside allOf
-- and the like); otherwise the request gets a 500, as in Express Gateway.
--
-- Action:
--   rewrite   the new URL (required)
--   redirect  unset or false: the URL is rewritten (later policies, proxy
--             included, see the new one) and the pipeline goes on. A status
--             (301, 302, 303, 307, 308...) or true (302): the client is
--             redirected there, with Express's body ("Found. Redirecting to
--             /x" as text, or HTML when the client prefers it) and Vary: Accept.
-- In a pathmatch rewrite, `rewrite` is an Express path too: a ? right after a
-- :name makes that value optional, so a literal query is written with \?
-- ('/posts/:id\?full=1' in single quotes). Values captured by pathmatch are
-- put in as they were in the URL; the rest of `rewrite` is used as written
-- (the plugin percent-decodes the whole result, so %2F in `rewrite` would
-- become "/" there). With proxy, leave stripPath off: it forwards what the
-- route's "*" matched, before any rewrite.

local ffi = require "ffi"
local conditions = require "tollgate.conditions"
local regex = require "tollgate.regex"

local type, tostring, tonumber, error = type, tostring, tonumber, error
local find, sub, gsub, match, byte, format, lower = string.find, string.sub, string.gsub,
    string.match, string.byte, string.format, string.lower
local concat = table.concat

pcall(ffi.cdef, "uint32_t pcre2_get_ovector_count_8(pcre2_match_data_8 *match_data);")
local pcre = ffi.load("libpcre2-8.so.0")
local UNSET = ffi.cast("size_t", -1)

-- ---- path-to-regexp 2.x --------------------------------------------------------------------

local function escape_string(s)
    return (gsub(s, "([%.%+%*%?=%^!:%${}%(%)%[%]|/\\])", "\\%1"))
end

local function escape_group(s)
    return (gsub(s, "([=!:%$/%(%)])", "\\%1"))
end

-- The content of a "(...)" group at i (without nested parentheses, as
-- path-to-regexp 2 requires) and the position after it, or nil.
local function group_at(s, i)
    if sub(s, i, i) ~= "(" then return nil end
    local j = i + 1
    while j <= #s do
        local c = sub(s, j, j)
        if c == "\\" then
            j = j + 2
        elseif c == "(" then
            return nil
        elseif c == ")" then
            if j == i + 1 then return nil end
            return sub(s, i + 1, j - 1), j + 1
        else
            j = j + 1
        end
    end
    return nil
end

-- path-to-regexp 2's parse(): a list of strings and parameter tokens.
local function parse_path(str)
    local tokens, key, path, escaped = {}, 0, "", false
    local i, n = 1, #str
    while i <= n do
        local c = sub(str, i, i)
        local name, capture, group, nexti
        if c == "\\" and i < n then
            path = path .. sub(str, i + 1, i + 1)
            escaped = true
            i = i + 2
        else
            if c == ":" then
                name = match(str, "^[%w_]+", i + 1)
                if name then
                    nexti = i + 1 + #name
                    local g, after = group_at(str, nexti)
                    if g then capture, nexti = g, after end
                end
            elseif c == "(" then
                group, nexti = group_at(str, i)
            end
            if name or group then
                local modifier = match(str, "^[%+%*%?]", nexti)
                if modifier then nexti = nexti + 1 end
                local prev = ""
                if not escaped and #path > 0 then
                    local last = sub(path, -1)
                    if last == "/" or last == "." then
                        prev = last
                        path = sub(path, 1, -2)
                    end
                end
                if path ~= "" then
                    tokens[#tokens + 1] = path
                    path, escaped = "", false
                end
                local nxt = sub(str, nexti, nexti)
                local tname = name
                if not tname then
                    tname = key
                    key = key + 1
                end
                local delimiter = prev ~= "" and prev or "/"
                local pattern = capture or group
                tokens[#tokens + 1] = {
                    name = tname,
                    prefix = prev,
                    delimiter = delimiter,
                    optional = modifier == "?" or modifier == "*",
                    ["repeat"] = modifier == "+" or modifier == "*",
                    partial = prev ~= "" and nxt ~= "" and nxt ~= prev,
                    pattern = pattern and escape_group(pattern) or
                        ("[^" .. escape_string(delimiter) .. "]+?"),
                    custom = pattern ~= nil,
                }
                i = nexti
            else
                path = path .. c
                i = i + 1
            end
        end
    end
    if path ~= "" then tokens[#tokens + 1] = path end
    return tokens
end

-- path-to-regexp 2's tokensToRegExp() with its defaults (end, not strict),
-- case-insensitive; returns the regex and the parameter tokens in order.
local function path_regex(str)
    local tokens = parse_path(str)
    local route, keys = {}, {}
    for _, t in ipairs(tokens) do
        if type(t) == "string" then
            route[#route + 1] = escape_string(t)
        else
            keys[#keys + 1] = t
            local prefix = escape_string(t.prefix)
            local capture = t["repeat"] and
                ("(?:" .. t.pattern .. ")(?:" .. prefix .. "(?:" .. t.pattern .. "))*") or t.pattern
            if t.optional then
                if t.partial then
                    route[#route + 1] = prefix .. "(" .. capture .. ")?"
                else
                    route[#route + 1] = "(?:" .. prefix .. "(" .. capture .. "))?"
                end
            else
                route[#route + 1] = prefix .. "(" .. capture .. ")"
            end
        end
    end
    local src = "^" .. concat(route) .. "(?:\\/)?$"
    local re, err = regex.compile(src, "i")
    if not re then return nil, err end
    return re, keys
end

-- path-to-regexp 2's compile(): fn(values) -> path, or raises.
local function path_compiler(str)
    local tokens = parse_path(str)
    for _, t in ipairs(tokens) do
        if type(t) == "table" and t.custom then
            local re, err = regex.compile("^(?:" .. t.pattern .. ")$")
            if not re then return nil, err end
            t.check = re
        end
    end
    return function(values)
        local out = {}
        for _, t in ipairs(tokens) do
            if type(t) == "string" then
                out[#out + 1] = t
            else
                local v = values[t.name]
                if v ~= nil and v ~= false then
                    v = tostring(v)
                    if t.check and not t.check:test(v) then
                        error("rewrite: \"" .. tostring(t.name) .. "\" is \"" .. v ..
                            "\", which does not match (" .. t.pattern .. ")", 0)
                    end
                    out[#out + 1] = t.prefix .. v
                elseif t.optional then
                    if t.partial then out[#out + 1] = t.prefix end
                else
                    error("rewrite: no value for :" .. tostring(t.name) ..
                        " (the pathmatch condition did not capture it)", 0)
                end
            end
        end
        return concat(out)
    end
end

-- ---- String.replace with a regex --------------------------------------------------------

-- The replacement template as parts: strings, group numbers, "&", "`", "'".
local function parse_replacement(s)
    local parts = {}
    local i, lit = 1, {}
    while i <= #s do
        local c = sub(s, i, i)
        local nx = sub(s, i + 1, i + 1)
        if c == "$" and (nx == "$" or nx == "&" or nx == "`" or nx == "'") then
            if nx == "$" then
                lit[#lit + 1] = "$"
            else
                if #lit > 0 then parts[#parts + 1] = concat(lit); lit = {} end
                parts[#parts + 1] = { kind = nx }
            end
            i = i + 2
        elseif c == "$" and find(nx, "%d") then
            if #lit > 0 then parts[#parts + 1] = concat(lit); lit = {} end
            parts[#parts + 1] = { kind = "n", two = match(s, "^%d%d", i + 1), one = tonumber(nx) }
            i = i + 1 + (match(s, "^%d%d", i + 1) and 2 or 1)
        else
            lit[#lit + 1] = c
            i = i + 1
        end
    end
    if #lit > 0 then parts[#parts + 1] = concat(lit) end
    return parts
end

-- s with the first match of re replaced (JavaScript's s.replace(re, repl)).
local function js_replace(re, s, parts)
    local rc = pcre.pcre2_match_8(re.code, s, #s, 0, 0, re.md, nil)
    if rc < 0 then return s end
    local ov = pcre.pcre2_get_ovector_pointer_8(re.md)
    local ngroups = tonumber(pcre.pcre2_get_ovector_count_8(re.md)) - 1
    local function group(k)
        local a, b = ov[2 * k], ov[2 * k + 1]
        if k >= rc or a == UNSET then return "" end
        return sub(s, tonumber(a) + 1, tonumber(b))
    end
    local ms, me = tonumber(ov[0]), tonumber(ov[1])
    local out = { sub(s, 1, ms) }
    for _, p in ipairs(parts) do
        if type(p) == "string" then
            out[#out + 1] = p
        elseif p.kind == "&" then
            out[#out + 1] = sub(s, ms + 1, me)
        elseif p.kind == "`" then
            out[#out + 1] = sub(s, 1, ms)
        elseif p.kind == "'" then
            out[#out + 1] = sub(s, me + 1)
        else
            local two = p.two and tonumber(p.two)
            if two and two >= 1 and two <= ngroups then
                out[#out + 1] = group(two)
            elseif p.one >= 1 and p.one <= ngroups then
                out[#out + 1] = group(p.one) .. (p.two and sub(p.two, 2) or "")
            else
                out[#out + 1] = "$" .. (p.two or tostring(p.one))
            end
        end
    end
    out[#out + 1] = sub(s, me + 1)
    return concat(out)
end

-- ---- the plugin's conditions ------------------------------------------------------------

local MATCH = { properties = { match = { type = "string", required = true,
    description = "the URL pattern to look for" } } }

conditions.register("pathmatch", {
    schema = MATCH,
    build = function(cfg, path)
        local re, keys = path_regex(cfg.match)
        if not re then return nil, path .. ".match: " .. keys end
        return function(req)
            local m = re:exec(req.url)
            if not m then return false end
            local values = {}
            for i, k in ipairs(keys) do
                local v = m[i]
                if v then values[k.name] = v end
            end
            req.ctx.matchedCondition = values
            return true
        end
    end,
})

conditions.register("regexpmatch", {
    schema = MATCH,
    build = function(cfg, path)
        local re, err = regex.compile(cfg.match)
        if not re then return nil, path .. ".match: " .. err end
        return function(req)
            if not re:test(req.url) then return false end
            req.ctx.matchedCondition = { plainRegEx = re }
            return true
        end
    end,
})

-- ---- redirects as Express's res.redirect ------------------------------------------------

local REASONS = {
    [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found",
    [303] = "See Other", [304] = "Not Modified", [305] = "Use Proxy",
    [307] = "Temporary Redirect", [308] = "Permanent Redirect",
}

-- encodeurl: characters not allowed in a URL percent-encoded, existing
-- escapes kept.
local function encode_url(u)
    u = gsub(u, "%%(%x?%x?)", function(h)
        if #h == 2 then return nil end
        return "%25" .. h
    end)
    return (gsub(u, "[^%w%-%._~:/%?#%[%]@!%$&'%(%)%*%+,;=%%]", function(c)
        return format("%%%02X", byte(c))
    end))
end

local function escape_html(s)
    return (gsub(s, "[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
        ['"'] = "&quot;", ["'"] = "&#39;" }))
end

-- Express's res.format({ text, html, default }): "text", "html" or nil.
local function negotiate(accept)
    if accept == nil or accept == "" then return "text" end
    local best = { text = { q = -1, spec = -1 }, html = { q = -1, spec = -1 } }
    for range in accept:gmatch("[^,]+") do
        local mt = lower(match(range, "^%s*([^;%s]+)") or "")
        local q = tonumber(match(range, ";%s*q=([%d%.]+)")) or 1
        local function consider(kind, spec)
            local b = best[kind]
            if spec > b.spec then b.q, b.spec = q, spec end
        end
        if mt == "text/plain" then consider("text", 2) end
        if mt == "text/html" then consider("html", 2) end
        if mt == "text/*" then consider("text", 1); consider("html", 1) end
        if mt == "*/*" then consider("text", 0); consider("html", 0) end
    end
    local t, h = best.text.q, best.html.q
    if t <= 0 and h <= 0 then return nil end
    if h > t then return "html" end
    return "text"
end

local function redirect(status, to, req)
    local location = encode_url(to)
    local reason = REASONS[status] or "Redirect"
    local headers = { Location = location, Vary = "Accept" }
    local body = ""
    local kind = negotiate(req:header("accept"))
    if kind == "text" then
        headers["Content-Type"] = "text/plain; charset=utf-8"
        body = reason .. ". Redirecting to " .. location
    elseif kind == "html" then
        headers["Content-Type"] = "text/html; charset=utf-8"
        local u = escape_html(location)
        body = "<p>" .. reason .. ". Redirecting to <a href=\"" .. u .. "\">" .. u .. "</a></p>"
    end
    return status, body, headers
end

-- ---- the policy --------------------------------------------------------------------------

local function new(conf)
    local status = conf.redirect
    if status == true then
        status = 302
    elseif status == false then
        status = nil
    elseif status ~= nil and (status < 300 or status > 399) then
        return nil, "redirect: expected a 3xx status (or true for 302), got " .. tostring(status)
    end
    local compiled, err = path_compiler(conf.rewrite)
    if not compiled then return nil, "rewrite: " .. err end
    return {
        compiled = compiled,
        replacement = parse_replacement(conf.rewrite),
        status = status,
    }
end

local function access(self, req)
    local mc = req.ctx.matchedCondition
    if not mc then
        error("rewrite: no pathmatch or regexpmatch condition matched before this step; " ..
            "give the step one", 0)
    end
    local to
    if mc.plainRegEx then
        to = js_replace(mc.plainRegEx, req.url, self.replacement)
    else
        to = self.compiled(mc)
    end
    if self.status then
        return redirect(self.status, to, req)
    end
    req.url = to
    local q = find(to, "?", 1, true)
    req.path = q and sub(to, 1, q - 1) or to
    req.query = q and sub(to, q + 1) or false
end

return {
    name = "rewrite",
    schema = {
        description = "Rewrites the request URL, or redirects, by a pathmatch or regexpmatch pattern.",
        properties = {
            rewrite = { type = "string", required = true,
                description = "the new URL: :name values from pathmatch, or $1... from regexpmatch" },
            redirect = { type = { "integer", "boolean" },
                description = "a 3xx status (true: 302) to redirect the client; unset: rewrite" },
        },
    },
    new = new,
    access = access,
    path_regex = path_regex,
    path_compiler = path_compiler,
    js_replace = function(re, s, repl) return js_replace(re, s, parse_replacement(repl)) end,
    encode_url = encode_url,
    negotiate = negotiate,
}
