-- TAKE_TOKEN: a token bucket shared by every worker: refill ``rate`` tokens a second
-- up to ``capacity``, then take one if there is one.
-- ARGV: bucket key, rate, capacity, lease clock ('' = server time).
-- Returns '0' when a token was taken, else the seconds until one will be there (as
-- text: Lua numbers come back as integers).
local key = P.ratelimit .. nextarg()
local rate, capacity = tonumber(nextarg()), tonumber(nextarg())
local now = lease_now(nextarg())
local f = redis.call('HMGET', key, 'tokens', 'updated')
local tokens = capacity
if f[1] then
  tokens = math.min(capacity, tonumber(f[1]) + math.max(0, now - tonumber(f[2])) * rate)
end
-- An idle bucket refills to capacity; after that it need not be kept.
local keep_ms = math.ceil(capacity / rate * 1000) + 1000
if tokens >= 1 then
  redis.call('HSET', key, 'tokens', exact(tokens - 1), 'updated', exact(now))
  redis.call('PEXPIRE', key, keep_ms)
  return '0'
end
redis.call('HSET', key, 'tokens', exact(tokens), 'updated', exact(now))
redis.call('PEXPIRE', key, keep_ms)
return exact((1 - tokens) / rate)
