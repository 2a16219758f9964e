-- TAKE_TOKEN: a token bucket shared by every worker: refill ``rate`` tokens a second
-- up to ``capacity``, then take one if there is one.
-- ARGV: bucket key, rate, capacity, lease clock ('' = server time).
-- Returns '0' when a token was taken, else the seconds until one will be there (as
-- text: Lua numbers come back as integers).
local key = nextarg()
local rate, capacity = tonumber(nextarg()), tonumber(nextarg())
local now = lease_now(nextarg())
local wait = take_bucket(key, rate, capacity, now)
if wait == 0 then
  return '0'
end
return exact(wait)
