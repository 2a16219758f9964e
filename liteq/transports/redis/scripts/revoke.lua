-- REVOKE: remember revoked task ids until their time is up; a claim that leases one
-- marks it revoked, so its worker records REVOKED instead of running it.
-- ARGV: forget at (epoch seconds, '' = never), now (wall), count, then per task:
--       task id, json (terminate, signal).
-- Revocations past their time are dropped on the way. Workers are woken (every queue's
-- channel), so tasks they prefetched are checked again before they start.
local until_at, now_wall = nextarg(), nextarg()
if until_at == '' then
  until_at = 'inf'
end
for _ = 1, tonumber(nextarg()) do
  local task_id, value = nextarg(), nextarg()
  redis.call('HSET', KEY.revoked, task_id, value)
  redis.call('ZADD', KEY.revoked_until, until_at, task_id)
end
local woken = {}
for _, queue in ipairs(redis.call('SMEMBERS', KEY.queues)) do
  woken[queue] = true
end
wake(woken)
return forget_revoked(now_wall)
