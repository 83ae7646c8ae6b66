-- bench/bearer.lua: wrk script that sends `Authorization: Bearer TOKEN` on every request.
--
--   wrk ... -s bench/bearer.lua http://127.0.0.1:PORT/ -- TOKEN
--
-- The header is set in init(), before wrk formats its request, so wrk still sends one
-- pre-built request over and over (no per-request Lua: the load generator costs what it
-- costs without a script). wrk counts every status >= 400 as "Non-2xx or 3xx responses".

function init(args)
    local token = args[1]
    if not token or token == "" then
        io.stderr:write("bearer.lua: pass the token after --\n")
        os.exit(2)
    end
    wrk.headers["Authorization"] = "Bearer " .. token
end
