-- RELEASE_WORKER: put back, uncounted, every message a (dead) pool process still
-- holds, and forget its lease.
-- ARGV: holder. Returns how many messages went back.
local holder = nextarg()
local released, woken = 0, {}
for _, id in ipairs(redis.call('SMEMBERS', P.held .. holder)) do
  local m = leased_message(id)
  if m.token and m.holder == holder then
    lease_ended(id, m)
    release(id, m, woken)
    released = released + 1
  end
end
drop_holder(holder)
wake(woken)
return released
