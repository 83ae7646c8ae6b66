-- The README's "Write your first policy" walkthrough, as written: its files
-- are taken from README.md itself and created in a temp dir, then its
-- commands are run there (the port 8080 replaced by a free one): the
-- check, the gateway, the curl, the reload on edit, and its busted spec.

local H = require "spec.06-lua.helpers"

local process = H.process
local http = H.http

local ROOT = H.ROOT
local BIN = ROOT .. "/build/tollgate"

-- The walkthrough's section of README.md, and its fenced blocks in order
-- (list-item indentation removed).
local function walkthrough()
  local readme = assert(process.read_file(ROOT .. "/README.md"))
  local section = readme:match("\n## Write your first policy\n(.-)\n## ")
  assert(section, "README.md has no \"Write your first policy\" section")
  local blocks = {}
  for indent, lang, body in section:gmatch("\n([ ]*)```(%w*)\n(.-)\n[ ]*```") do
    local lines = {}
    for line in (body .. "\n"):gmatch("([^\n]*)\n") do
      lines[#lines + 1] = line:sub(1, #indent) == indent and line:sub(#indent + 1) or line
    end
    blocks[#blocks + 1] = { lang = lang, text = table.concat(lines, "\n") .. "\n" }
  end
  return section, blocks
end

describe("README: write your first policy", function()
  local section, blocks = walkthrough()
  local dir

  -- the files the steps list, and the commands of step 3
  local policy, config, commands, spec
  for _, b in ipairs(blocks) do
    if b.lang == "lua" and b.text:find("name = \"hello\"", 1, true) then policy = b.text
    elseif b.lang == "yaml" then config = b.text
    elseif b.lang == "" and b.text:find("tollgate -t", 1, true) then commands = b.text
    elseif b.lang == "lua" and b.text:find("tollgate.testing", 1, true) then spec = b.text
    end
  end

  setup(function()
    dir = process.tmpdir("tollgate-06-walkthrough")
    assert(process.mkdir_p(dir .. "/policies"))
    assert(process.mkdir_p(dir .. "/spec"))
    if policy then assert(process.write_file(dir .. "/policies/hello.lua", policy)) end
    if spec then assert(process.write_file(dir .. "/spec/hello_spec.lua", spec)) end
  end)
  teardown(function() if dir then process.rm_rf(dir) end end)

  it("lists the files and commands this spec follows", function()
    assert.is_string(policy, "the policies/hello.lua block")
    assert.is_string(config, "the gateway.config.yml block")
    assert.is_string(commands, "the commands block")
    assert.is_string(spec, "the spec/hello_spec.lua block")
    H.contains("`policies/hello.lua`", section)
    H.contains("`gateway.config.yml`", section)
    H.contains("`spec/hello_spec.lua`", section)
    H.contains("busted --lua=luajit", section)
    -- only the port changes
    assert.equal(1, select(2, config:gsub("8080", "8080")), "one port to replace")
  end)

  it("step 3: build/tollgate -t accepts the config", function()
    local check = commands:match("(build/tollgate %-t %-c gateway%.config%.yml)")
    assert.is_string(check, commands)
    assert(process.write_file(dir .. "/gateway.config.yml", config))
    local code, out = process.run{ cmd = { BIN, "-t", "-c", "gateway.config.yml" }, cwd = dir }
    assert.equal(0, code, out)
    H.contains("is valid", out)
  end)

  it("step 3: the gateway runs, answers the curl as its comment says, reloads an edited policy", function()
    assert.is_string(commands:match("(build/tollgate %-c gateway%.config%.yml &)"), commands)
    local name, value, url_port, path, expected =
      commands:match("curl %-H '([^:]+): ([^']+)' http://127%.0%.0%.1:(%d+)(/%S*)%s+# ([^\n]+)")
    assert.is_string(name, "the curl line: " .. commands)
    assert.equal("8080", url_port)

    local port = process.free_port()
    assert(process.write_file(dir .. "/gateway.config.yml", (config:gsub("8080", tostring(port)))))
    local pid = assert(process.start{ cmd = { BIN, "-c", "gateway.config.yml" }, cwd = dir,
      stdout = dir .. "/stdout.log", stderr = dir .. "/stderr.log" })
    finally(function() process.stop(pid, "TERM", 10) end)
    process.wait_file_match(dir .. "/stderr.log", "listening on http://127%.0%.0%.1:" .. port, 5,
      { pid = pid })

    local res = assert(http.get(port, path, { [name] = value }))
    assert.equal(200, res.status)
    assert.equal(expected .. "\n", res.body)

    -- "Edit policies/hello.lua while it runs: the gateway reloads it."
    H.contains("the gateway reloads it", section)
    assert(process.write_file(dir .. "/policies/hello.lua",
      (policy:gsub('"\\n"', '"!\\n"'))))
    H.until_(function()
      local r = assert(http.get(port, path, { [name] = value }))
      return r.body == expected .. "!\n"
    end, 10, "the edited policy to answer")

    local code = process.stop(pid, "TERM", 10)
    assert.equal(0, code)
  end)

  it("step 4: its busted spec passes with plain busted --lua=luajit in that directory", function()
    assert(process.write_file(dir .. "/policies/hello.lua", policy))
    local code, out = process.run{ cmd = { "busted", "--lua=luajit", "-o", "plainTerminal" }, cwd = dir,
      env = { LUA_PATH = ROOT .. "/lua/?.lua;;" }, timeout = 60 }
    assert.equal(0, code, out)
    H.contains("1 success / 0 failures / 0 errors", out)
  end)

  it("step 4 elsewhere: after make install, with LUA_PATH on the installed modules", function()
    H.contains('LUA_PATH="/usr/local/share/tollgate/lua/?.lua;;"', section)
    local dest = process.tmpdir("tollgate-06-install")
    finally(function() process.rm_rf(dest) end)
    local code, out = process.run{ cmd = { "make", "-s", "install", "DESTDIR=" .. dest }, cwd = ROOT,
      timeout = 120 }
    assert.equal(0, code, out)
    local share = dest .. "/usr/local/share/tollgate"
    -- a project of its own: the README's policy and spec, and a spec using a stock policy
    local project = dest .. "/project"
    assert(process.mkdir_p(project .. "/policies"))
    assert(process.mkdir_p(project .. "/spec"))
    assert(process.write_file(project .. "/policies/hello.lua", policy))
    assert(process.write_file(project .. "/spec/hello_spec.lua", spec))
    assert(process.write_file(project .. "/spec/stock_spec.lua", [[
local testing = require "tollgate.testing"
describe("a stock policy from the installation", function()
  it("limits", function()
    local p = testing.policy("rate-limit", { max = 1, rateLimitBy = "'install'" })
    assert.equal(200, p:run{ path = "/" }.status)
    assert.equal(429, p:run{ path = "/" }.status)
  end)
end)
]]))
    code, out = process.run{ cmd = { "busted", "--lua=luajit", "-o", "plainTerminal" }, cwd = project,
      env = { LUA_PATH = share .. "/lua/?.lua;;", TOLLGATE_HOME = false, TOLLGATE_LIB = false },
      timeout = 60 }
    assert.equal(0, code, out)
    H.contains("2 successes / 0 failures / 0 errors", out)
  end)
end)
