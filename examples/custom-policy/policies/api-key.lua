-- api-key: lets a request through when it carries a known API key, and
-- tells the upstream who it is. A user policy: the same shape as the stock
-- ones (policies/ of tollgate), found here because it sits in policies/
-- beside the config.
--
--   policies: [api-key, proxy]
--   ...
--       - api-key:
--           - action:
--               keys: { k-123: alice, k-456: bob }   # key -> consumer id
--               header: x-api-key                    # where the key is (default)
--
-- A good key: req.user = { id = <consumer> } (the `authenticated` condition
-- holds) and eg-consumer-id goes upstream. No key or a bad one: 401.

return {
    name = "api-key",
    schema = {
        description = "Lets through requests with a known API key.",
        properties = {
            keys = { type = "object", additional = true, required = true,
                description = "API key -> consumer id" },
            header = { type = "string", default = "x-api-key",
                description = "the request header holding the key" },
        },
        check = function(conf)
            if next(conf.keys) == nil then return nil, "keys: needs at least one key" end
            for k, v in pairs(conf.keys) do
                if type(v) ~= "string" then
                    return nil, "keys." .. tostring(k) .. ": the consumer id must be a string"
                end
            end
            return true
        end,
    },

    -- once per config load
    new = function(conf)
        return { keys = conf.keys, header = conf.header:lower() }
    end,

    -- every request
    access = function(self, req)
        local consumer = self.keys[req:header(self.header) or ""]
        if not consumer then
            req:log_error("api-key: missing or unknown key")
            return 401, "Unauthorized", { ["WWW-Authenticate"] = "ApiKey" }
        end
        req.user = { id = consumer }
        req:set_header("eg-consumer-id", consumer)
        req:remove_header(self.header) -- the key stays at the gateway
    end,
}
