-- REAP: apply the lost-task policy to every message whose holder's lease ran out,
-- then forget those holders.
-- ARGV: lease clock ('' = server time), now (wall), policy.
-- Returns {requeued task ids, failed task ids}.
local clock, now_wall = nextarg(), nextarg()
local policy = read_policy()
local now = lease_now(clock)
local report, woken, tallies = {requeued = {}, failed = {}}, {}, {}
for _, holder in ipairs(redis.call('ZRANGEBYSCORE', KEY.leases, '-inf', '(' .. exact(now))) do
  for _, id in ipairs(redis.call('SMEMBERS', P.held .. holder)) do
    local m = leased_message(id)
    if m.token and m.holder == holder then
      lease_ended(id, m)
      apply_lost(id, m, policy, now_wall, report, woken, tallies)
    end
  end
  drop_holder(holder)
end
count_tasks(exact(math.floor(tonumber(now_wall) / 60) * 60), tallies)
wake(woken)
return {report.requeued, report.failed}
