-- luacheck: std +busted
-- What keeps a reload of 1,000 routes cheap must not change what a config
-- means: the YAML loader's fast path (runtime/yamlcfg.c) gives the same
-- document and line marks as libyaml, or leaves the text to libyaml (so
-- every error message is libyaml's); line marks are kept compactly and
-- read the same way; regexes are JIT-compiled on first use and match the
-- same.

local cyaml = require "tollgate.cyaml"
local config = require "tollgate.config"
local regex = require "tollgate.regex"
local routes = require "spec.04-reload.routes"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local t = f:read("*a")
  f:close()
  return t
end

-- Compares two loads: the same values, and for every table the same marks
-- (start line, line of each key or item, keys in order). nil when equal,
-- else where they differ.
local function differ(a, ma, b, mb, path, seen)
  if type(a) ~= type(b) then return path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) ~= "table" then
    if a ~= b and not (a ~= a and b ~= b) then
      return path .. ": " .. tostring(a) .. " vs " .. tostring(b)
    end
    return nil
  end
  if seen[a] then return nil end
  seen[a] = true
  for k, v in pairs(a) do
    if b[k] == nil then return path .. ": " .. tostring(k) .. " missing" end
    local d = differ(v, ma, b[k], mb, path .. "." .. tostring(k), seen)
    if d then return d end
  end
  for k in pairs(b) do
    if a[k] == nil then return path .. ": extra " .. tostring(k) end
  end
  local x, y = ma[a], mb[b]
  if (x == nil) ~= (y == nil) then return path .. ": marks on one side only" end
  if x then
    for k, v in pairs(x) do
      if k == "__keys" then
        if type(y.__keys) ~= "table" or #v ~= #y.__keys then return path .. ": __keys" end
        for i = 1, #v do
          if v[i] ~= y.__keys[i] then return path .. ": __keys[" .. i .. "]" end
        end
      elseif y[k] ~= v then
        return path .. ": line of " .. tostring(k) .. ": " .. tostring(v) .. " vs " .. tostring(y[k])
      end
    end
    for k in pairs(y) do
      if x[k] == nil then return path .. ": mark " .. tostring(k) .. " on one side only" end
    end
  end
  return nil
end

-- The default load (fast path, else libyaml) against libyaml alone.
local function same_as_libyaml(text, name)
  local d1, m1 = cyaml.load_string(text, name)
  local d2, m2 = cyaml.load_string(text, name, "libyaml")
  if d1 == nil or d2 == nil then
    assert.are.equal(tostring(m2), tostring(m1), name)
    assert.are.equal(d2, d1, name)
    return
  end
  local d = differ(d1, m1, d2, m2, name, {})
  assert(d == nil, d)
end

local function fast(text)
  local doc, err = cyaml.load_string(text, "t.yml", "fast")
  return doc ~= nil, err
end

describe("YAML fast path", function()
  it("reads the reload bench's 1,000-route config itself, as libyaml does", function()
    local text = routes.config { n = 1000, upstream = 9, variant = "a", tollgate = { "watch: false" } }
    assert.is_true((fast(text)))
    same_as_libyaml(text, "routes.yml")
  end)

  it("reads the configs of the examples itself", function()
    local taken = 0
    for path in io.popen("ls examples/*/*.yml"):lines() do
      same_as_libyaml(read(path), path)
      if fast(read(path)) then taken = taken + 1 end
    end
    assert.is_true(taken > 0)
  end)

  it("agrees with libyaml on every YAML and JSON file of the repository", function()
    local n = 0
    local list = io.popen("find examples spec fuzz/corpus/config -type f " ..
      "\\( -name '*.yml' -o -name '*.yaml' -o -name '*.json' -o -path 'fuzz/corpus/config/*' \\)")
    for path in list:lines() do
      same_as_libyaml(read(path), path)
      n = n + 1
    end
    list:close()
    assert.is_true(n > 50)
  end)

  -- text, and whether the fast path takes it (false: libyaml's, because of
  -- an error or a feature the fast path leaves to it)
  local CASES = {
    { "a: 1\nb:\n  - x\n  - y\nc:\n- p\n- q\nd: e\n", true },
    { "a:\n  b:\n    c: 1\n  d: [1, 2, {e: f, g: [h]}]\n", true },
    { "- a\n- b: 1\n  c: 2\n- [x, y]\n- 'q''s'\n- \"dq\"\n", true },
    { "a: b # c\nd: 'e' # f\ng: h#i\n", true },
    { "a: 1 # x\n# y\n   # z\nb: 2\n", true },
    { "a: -1\nb: -x\nc: 0x10\nd: 1_000\ne: .5\nf: .inf\ng: ~\nh: null\ni: True\nj: yes\n", true },
    { "a:\nb:\n", true },
    { "  a: 1\n  b: 2\n", true },
    { "a: http://x:80/y\nkey with space: v\na :b: c\n1: one\n", true },
    { "a: [ ]\nb: { }\nc: []\n'k': v\n\"k2\": v2\n__line: 3\n__keys: 4\n", true },
    { "- a:\n  - x\n- b\n-  a: 1\n   b: 2\n", true },
    { "a:\n    - x\n    - y\n  \nb: 1\n", true },
    -- errors: libyaml's messages
    { "a: b: c\n", false }, { "a: 1\na: 2\n", false }, { "a: {x: 1, x: 2}\n", false },
    { "a: [1,\n 2]\n", false }, { "a: b\n  c\n", false }, { "  a: 1\n b: 2\n", false },
    { "a:\n  b: 1\n c: 2\n", false }, { "- a: 1\n  - b\n", false }, { "a: 'x' y\n", false },
    { "a: [x]]\n", false }, { "a: - b\n", false }, { "\"2\":{b: c}\n", false },
    -- features left to libyaml
    { "a: [1, 2,]\n", false }, { "a: |\n  x\n", false }, { "a: >\n  x\n", false },
    { "a: &x 1\nb: *x\n", false }, { "a: !!str 1\n", false }, { "<<: {a: 1}\n", false },
    { "---\na: 1\n", false }, { "a: 1\n...\n", false }, { "%YAML 1.1\n---\na: 1\n", false },
    { "a:\tb\n", false }, { "a: b\r\n", false }, { "a: 'x\n  y'\n", false },
    { "a: \"x\\ny\"\n", false }, { "? a\n: b\n", false }, { "- - a\n", false },
    { "-\n  a: 1\n-\n", false }, { "a: [b: c]\n", false }, { "a: {b}\n", false },
    { "a: {\"b\":1}\n", false }, { "a: [http://x]\n", false }, { "a: 'caf\195\169'\n", false },
    { "", false }, { "# only a comment\n", false }, { "--- 5\n", false },
  }

  for i, c in ipairs(CASES) do
    it("case " .. i .. ": " .. (c[2] and "read by the fast path" or "left to libyaml") ..
       ", same result: " .. c[1]:gsub("\n", "\\n"):gsub("\t", "\\t"):sub(1, 50), function()
      assert.are.equal(c[2], (fast(c[1])))
      same_as_libyaml(c[1], "case.yml")
    end)
  end

  it("agrees with libyaml on 3,000 mutations of the repository's configs", function()
    local seeds = {}
    for path in io.popen("ls examples/*/*.yml fuzz/corpus/config/*"):lines() do
      local t = read(path)
      seeds[#seeds + 1] = #t > 3000 and t:sub(1, 3000) or t
    end
    local bits = { " ", "  ", "\n", "\n  ", "\n- ", "-", "- ", ":", ": ", " : ", "#", " #",
      "'", '"', "''", "[", "]", "{", "}", ",", "a", "1", "~", "x: y", "- a: ", "{a: b}",
      "[a, b]", "<<", "*", "&", "!", "|", "?", "\t" }
    -- a fixed sequence (a small LCG), so a failure is reproducible
    local state = 12345
    local function rnd(n)
      state = (state * 1103515245 + 12345) % 2147483648
      return state % n + 1
    end
    local taken = 0
    for i = 1, 3000 do
      local t = seeds[rnd(#seeds)]
      for _ = 1, rnd(4) do
        local pos, kind = rnd(#t + 1), rnd(3)
        if kind == 1 then
          t = t:sub(1, pos - 1) .. bits[rnd(#bits)] .. t:sub(pos)
        elseif kind == 2 then
          t = t:sub(1, pos - 1) .. t:sub(pos + rnd(3))
        else
          local b = bits[rnd(#bits)]
          t = t:sub(1, pos - 1) .. b .. t:sub(pos + #b)
        end
      end
      same_as_libyaml(t, "mutation" .. i .. ".yml")
      if fast(t) then taken = taken + 1 end
    end
    assert.is_true(taken > 300, "the fast path took only " .. taken)
  end)
end)

describe("compact line marks", function()
  local TEXT = "a:\n  b: 1\n  c: [x, y]\nlist:\n  - p\n  - q: 2\n    r: 3\n"

  for _, mode in ipairs { "fast", "libyaml" } do
    it("config's view of them (" .. mode .. ")", function()
      local doc, marks = cyaml.load_string(TEXT, "m.yml", mode)
      assert.is_table(doc)
      local ctx = config.new_ctx("m.yml", marks)
      assert.are.same({ "a", "list" }, ctx:keys(doc))
      assert.are.same({ "b", "c" }, ctx:keys(doc.a))
      assert.are.equal(1, ctx:line(doc))
      assert.are.equal(4, ctx:line(doc, "list"))
      assert.are.equal(3, ctx:line(doc.a, "c"))
      assert.are.equal(2, ctx:line(doc.a, "nope"))   -- the mapping's own line
      assert.are.equal(2, ctx:line(doc.a, "__line"))
      assert.are.equal(5, ctx:line(doc.list, 1))
      assert.are.equal(6, ctx:line(doc.list, 2))
      assert.are.equal(5, ctx:line(doc.list, 3))     -- no item 3: the list's line
      assert.are.equal(7, ctx:line(doc.list[2], "r"))
      assert.is_true(ctx:is_seq(doc.list))
      assert.is_true(ctx:is_seq(doc.a.c))
      assert.is_false(ctx:is_seq(doc.a))
      assert.is_nil(ctx:line({}))
      assert.are.equal("m.yml:3: a.c: bad", ctx:error("a.c: bad", doc.a, "c"))
      -- the documented per-table form, built on first use
      assert.are.same({ __line = 2, b = 2, c = 3, __keys = { "b", "c" } }, marks[doc.a])
      assert.are.same({ __line = 5, 5, 6 }, marks[doc.list])
      assert.is_nil(marks[{}])
    end)
  end

  it("a Lua config's plain marks still work", function()
    local t = { b = 1, a = 2 }
    local ctx = config.new_ctx("x.lua")
    assert.are.same({ "a", "b" }, ctx:keys(t))
    assert.is_nil(ctx:line(t, "a"))
    assert.is_false(ctx:is_seq(t))
  end)
end)

describe("regexes compiled for a config", function()
  it("are JIT-compiled when first used, and match the same before and after", function()
    local saved = regex.jit
    regex.jit = true
    local re = assert(regex.compile("^/api/(\\d+)$", "i"))
    assert.is_nil(rawget(re, "code"))                -- not compiled for the JIT yet
    assert.is_true(re:test("/API/12"))
    assert.is_not_nil(rawget(re, "code"))
    assert.is_false(re:test("/api/x"))
    assert.are.equal("12", re:exec("/api/12")[1])
    local re2 = assert(regex.compile("^a(b)?$"))
    local m = re2:exec("a")                          -- exec first
    assert.are.equal("a", m[0])
    assert.is_falsy(m[1])
    assert.is_not_nil(re2.code)                       -- a caller's own pcre2_match gets it too
    regex.jit = false
    local re3 = assert(regex.compile("x"))
    assert.is_not_nil(rawget(re3, "code"))            -- check-only loads: the interpreter
    assert.is_true(re3:test("axb"))
    regex.jit = saved
  end)

  it("are kept per process: a generation takes the previous one's code, JIT included, " ..
     "and the last user frees it", function()
    local ffi = require "ffi"
    local C = require("tollgate.core").C
    local saved = regex.jit
    regex.jit = true
    local pattern = "^/kept/(\\d+)$"
    local key = "0/" .. pattern
    local a = assert(regex.compile(pattern))
    local b = assert(regex.compile(pattern))        -- as the next generation would
    local addr = function(re) return tonumber(ffi.cast("uintptr_t", rawget(re, "pcode"))) end
    assert.equal(addr(a), addr(b))
    -- tg_rx_jit with a counting stand-in for pcre2_jit_compile: how often it would compile
    local calls = 0
    local counter = ffi.cast("int (*)(void *, uint32_t)", function() calls = calls + 1; return 0 end)
    assert.is_true(a:test("/kept/7"))                 -- the first match JIT-compiles, for a and b
    assert.equal(0, C.tg_rx_jit(rawget(b, "pcode"), ffi.cast("void *", counter), 1))
    assert.equal(0, calls)                            -- b need not compile it again
    assert.is_true(b:test("/kept/8"))
    assert.is_false(b:test("/kept/x"))
    local other = assert(regex.compile(pattern, "i")) -- other options: another code
    assert.not_equal(addr(a), addr(other))
    a, b, other = nil, nil, nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    assert.is_true(C.tg_rx_find(key, #key) == nil) -- freed with its last user
    -- a code never matched yet: compiled once, whoever asks first, and never again
    local fresh = assert(regex.compile("^/once/(\\d+)$"))
    local code = rawget(fresh, "pcode")
    C.tg_rx_jit(code, ffi.cast("void *", counter), 1)
    C.tg_rx_jit(code, ffi.cast("void *", counter), 1)
    assert.equal(1, calls)
    assert.is_true(fresh:test("/once/1"))             -- matches (interpreted: the stand-in compiled nothing)
    assert.equal(1, calls)
    fresh, code = nil, nil -- luacheck: ignore 311
    counter:free()
    regex.jit = saved
  end)
end)

describe("Lua files the config uses, compiled once per process (cyaml.loadfile)", function()
  local function write(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
  end

  it("loads like loadfile: the chunk, its name, and loadfile's errors", function()
    for _, path in ipairs { "policies/terminate.lua", "lua/tollgate/schema.lua" } do
      for _ = 1, 2 do -- the second load may come from the kept bytecode
        local chunk = assert(cyaml.loadfile(path))
        assert.are.equal("@" .. path, debug.getinfo(chunk, "S").source)
        local mod = chunk("terminate")
        assert.is_table(mod)
      end
    end
    local _, want = loadfile("/nonexistent/x.lua")
    local f, err = cyaml.loadfile("/nonexistent/x.lua")
    assert.is_nil(f)
    assert.are.equal(want, err)
    local bad = os.tmpname()
    write(bad, "return {")
    _, want = loadfile(bad)
    f, err = cyaml.loadfile(bad)
    os.remove(bad)
    assert.is_nil(f)
    assert.are.equal(want, err)
  end)

  it("an edit takes effect at once, even of the same size", function()
    local path = os.tmpname()
    for i = 1, 9 do
      write(path, "return " .. i)
      assert.are.equal(i, assert(cyaml.loadfile(path))())
    end
    os.remove(path)
  end)

  it("require goes through it and gives the same modules", function()
    local found = false
    for _, searcher in ipairs(package.loaders) do
      if searcher ~= package.loaders[1] and debug.getinfo(searcher, "S").source:match("config%.lua$") then
        found = true
      end
    end
    assert.is_true(found)
    local saved = package.loaded["tollgate.template"]
    package.loaded["tollgate.template"] = nil
    local t = require "tollgate.template"
    package.loaded["tollgate.template"] = saved
    assert.is_function(t.compile_template)
    assert.are.equal(42, t.compile_expression("42")({}))
  end)
end)
