-- LOSE: apply the lost-task policy now to leases whose process died (a lease no
-- longer held with that token is skipped).
-- ARGV: now (wall), policy, count, then (id, token) pairs.
-- Returns {requeued task ids, failed task ids}.
local now_wall = nextarg()
local policy = read_policy()
local report, woken, tallies = {requeued = {}, failed = {}}, {}, {}
for _ = 1, tonumber(nextarg()) do
  local id, token = nextarg(), nextarg()
  local m = leased_message(id)
  if m.token and m.token == token then
    lease_ended(id, m)
    apply_lost(id, m, policy, now_wall, report, woken, tallies)
  end
end
count_tasks(exact(math.floor(tonumber(now_wall) / 60) * 60), tallies)
wake(woken)
return {report.requeued, report.failed}
