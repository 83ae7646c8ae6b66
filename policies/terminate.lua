-- terminate: answers the request from the gateway, without an upstream.
--
--   - terminate:
--       - action:
--           statusCode: 403
--           message: Forbidden here
--
-- As in Express Gateway the body is sent with Express's res.send, so the
-- content type is text/html; charset=utf-8.

return {
    name = "terminate",
    schema = {
        description = "Answers with a fixed status and message.",
        properties = {
            statusCode = { type = "integer", default = 400, minimum = 100, maximum = 599,
                description = "status code of the response" },
            message = { type = "string", default = "Terminated",
                description = "body of the response" },
        },
    },
    new = function(conf)
        return {
            status = conf.statusCode,
            body = conf.message,
            headers = { ["Content-Type"] = "text/html; charset=utf-8" },
        }
    end,
    access = function(self)
        return self.status, self.body, self.headers
    end,
}
