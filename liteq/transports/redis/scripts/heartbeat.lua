-- HEARTBEAT: mark a registered worker alive, forget workers silent for long, renew
-- the worker's leases.
-- ARGV: worker id, now (wall), info json, stale before (wall), lease seconds,
--       lease clock ('' = server time).
-- Returns how many lease holders were renewed.
local worker, now_wall, info, stale_before = nextarg(), nextarg(), nextarg(), nextarg()
local lease_seconds, clock = nextarg(), nextarg()
if redis.call('HEXISTS', KEY.workers, worker) == 1 then
  redis.call('ZADD', KEY.heartbeats, now_wall, worker)
  redis.call('HSET', KEY.worker_info, worker, info)
end
local stale = redis.call('ZRANGEBYSCORE', KEY.heartbeats, '-inf', '(' .. stale_before)
if #stale > 0 then
  redis.call('HDEL', KEY.workers, unpack(stale))
  redis.call('HDEL', KEY.worker_info, unpack(stale))
  redis.call('ZREM', KEY.heartbeats, unpack(stale))
end
return extend_leases(worker, lease_seconds, clock)
