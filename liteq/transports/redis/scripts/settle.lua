-- SETTLE: end leases whose token still matches, each with its outcome.
-- ARGV: count, then per settlement: id, token, release ('1'/'0'),
--       has result ('1'/'0'), [result], follow-up count, follow-up envelopes...
-- Accepted: the message is removed, its result stored and its follow-ups published,
-- all at once; with release it goes back to the queue uncounted instead. A token that
-- no longer matches (the lease was taken over, or this settle already ran) changes
-- nothing. Returns 1 (accepted) or 0 per settlement.
local count = tonumber(nextarg())
local accepted, woken = {}, {}
for s = 1, count do
  local id, token, is_release = nextarg(), nextarg(), nextarg()
  local result = nil
  if nextarg() == '1' then
    result = read_result()
  end
  local follow = {}
  for i = 1, tonumber(nextarg()) do
    follow[i] = read_envelope()
  end
  local m = leased_message(id)
  if m.token and m.token == token then
    lease_ended(id, m)
    if is_release == '1' then
      release(id, m, woken)
    else
      redis.call('DEL', P.message .. id)
      if result then
        store_result(result)
      end
      for _, env in ipairs(follow) do
        publish(env, woken)
      end
    end
    accepted[s] = 1
  else
    accepted[s] = 0
  end
end
wake(woken)
return accepted
