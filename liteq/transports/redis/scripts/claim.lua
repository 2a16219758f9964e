-- CLAIM: lease up to ``limit`` ready messages of the given queues to one holder.
-- ARGV: holder, limit, lease seconds, lease clock ('' = server time), now (wall,
--       for etas), claim id, promotion budget, queue count, queues...
-- Due scheduled messages are promoted first. Each claimed message gets the token
-- "<claim id>.<n>" and one more delivery; the holder's lease deadline is pushed out.
-- A claim id seen before (a retry after a lost reply) returns that claim again.
-- Returns one array per message: id, token, deliveries, the envelope fields, its flow
-- control json (false when none), then
-- '1' when the task was revoked before it was claimed (its worker records REVOKED).
local holder, limit = nextarg(), tonumber(nextarg())
local lease_seconds, clock, now_wall = tonumber(nextarg()), nextarg(), nextarg()
local claim_id, budget = nextarg(), tonumber(nextarg())
local queues = {}
for i = 1, tonumber(nextarg()) do
  queues[i] = nextarg()
end
-- Paused queues (app.control.pause_queue) are left out; one EXISTS when none is.
if redis.call('EXISTS', KEY.paused) == 1 then
  local open = {}
  for _, queue in ipairs(queues) do
    if redis.call('SISMEMBER', KEY.paused, queue) == 0 then
      open[#open + 1] = queue
    end
  end
  queues = open
end

local FIELDS = {'t', 'n', 'q', 'p', 'r', 'x', 'a', 'c', 'h', 'b', 'f'}

local any_revoked = redis.call('EXISTS', KEY.revoked_until) == 1

local function delivery(id, token, deliveries)
  local f = redis.call('HMGET', P.message .. id, unpack(FIELDS))
  local row = {id, token, deliveries, unpack(f)}
  row[#row + 1] = (any_revoked and is_revoked(f[1], now_wall)) and '1' or '0'
  return row
end

local last = redis.call('HGET', KEY.claims, holder)
if last and string.sub(last, 1, #claim_id + 1) == claim_id .. ' ' then
  local out, n = {}, 0
  for id in string.gmatch(string.sub(last, #claim_id + 2), '%S+') do
    n = n + 1
    local token = claim_id .. '.' .. n
    local held = redis.call('HMGET', P.message .. id, 'k', 'd')
    if held[1] == token then
      out[#out + 1] = delivery(id, token, tonumber(held[2]))
    end
  end
  return out
end

-- Flow control: blocked messages whose rate token (or eta) is due are admitted
-- first; one ZRANGEBYSCORE when none is.
local flow_woken = {}
flow_wake_due(lease_now(''), flow_woken)
wake(flow_woken)

-- Due scheduled messages become ready (at most ``budget`` per queue and call).
for _, queue in ipairs(queues) do
  local skey = P.scheduled .. queue
  local due = redis.call('ZRANGEBYSCORE', skey, '-inf', now_wall, 'LIMIT', 0, budget)
  if #due > 0 then
    local rkey = P.ready .. queue
    for _, id in ipairs(due) do
      local priority = redis.call('HGET', P.message .. id, 'p')
      if priority then
        redis.call('ZADD', rkey, -(tonumber(priority) or 0), id)
      end
    end
    redis.call('ZREMRANGEBYRANK', skey, 0, #due - 1)
  end
end

-- The best ``limit`` ready messages: lowest (score, id) over all queues.
local ids = {}
if #queues == 1 then
  local popped = redis.call('ZPOPMIN', P.ready .. queues[1], limit)
  for i = 1, #popped, 2 do
    ids[#ids + 1] = popped[i]
  end
else
  local candidates = {}
  for _, queue in ipairs(queues) do
    local rkey = P.ready .. queue
    local found = redis.call('ZRANGE', rkey, 0, limit - 1, 'WITHSCORES')
    for i = 1, #found, 2 do
      candidates[#candidates + 1] = {tonumber(found[i + 1]), found[i], rkey}
    end
  end
  table.sort(candidates, function(a, b)
    if a[1] ~= b[1] then
      return a[1] < b[1]
    end
    return a[2] < b[2]
  end)
  for i = 1, math.min(limit, #candidates) do
    redis.call('ZREM', candidates[i][3], candidates[i][2])
    ids[#ids + 1] = candidates[i][2]
  end
end

local out, taken = {}, {}
for _, id in ipairs(ids) do
  local key = P.message .. id
  if redis.call('EXISTS', key) == 1 then
    taken[#taken + 1] = id
    local token = claim_id .. '.' .. #taken
    local deliveries = redis.call('HINCRBY', key, 'd', 1)
    redis.call('HSET', key, 'w', holder, 'k', token)
    local d = delivery(id, token, deliveries)
    lease_taken(id, d[6], d[4], holder)
    out[#out + 1] = d
    if d[14] then  -- flow control: a unique key held until the task starts is free
      local f = cjson.decode(d[14])
      if f.uk and f.uu == 'started' and redis.call('GET', P.unique .. f.uk) == d[4] then
        redis.call('DEL', P.unique .. f.uk)
      end
    end
  end
end
if #taken > 0 then
  local deadline = lease_now(clock) + lease_seconds
  redis.call('ZADD', KEY.leases, 'GT', exact(deadline), holder)
  redis.call('ZADD', KEY.holders, 0, holder)
  redis.call('HSET', KEY.claims, holder, claim_id .. ' ' .. table.concat(taken, ' '))
end
return out
