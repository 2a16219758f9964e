-- SETTLE: end leases whose token still matches, each with its outcome.
-- ARGV: marker TTL (ms), retry ('1' when this call is a retry), the minute (epoch
--       seconds) the task counters count in, count, then per settlement: id, token,
--       release ('1', '2' counted, '0'), release until (epoch seconds, ''), counter
--       field ('' none) and run time, has result ('1'/'0'), [result], follow-up count,
--       follow-up envelopes...
-- Accepted: the message is removed, its result stored and its follow-ups published,
-- all at once; with release it goes back to the queue uncounted instead (or waits as
-- scheduled until ``release until``: a rate-limited task; counted with '2': a task
-- that rejected its message with requeue). The token is
-- kept a while under ``settled:<id>``: a settle retried because Redis died before
-- replying finds it there and is accepted again, changing nothing. Otherwise a token
-- that no longer matches (the lease was taken over) changes nothing and is refused.
-- Returns 1 (accepted) or 0 per settlement.
local marker_ttl, retry, minute = nextarg(), nextarg() == '1', nextarg()
local count = tonumber(nextarg())
local accepted, woken, tallies = {}, {}, {}
for s = 1, count do
  local id, token, is_release, release_at = nextarg(), nextarg(), nextarg(), nextarg()
  local tally, runtime = nextarg(), nextarg()
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
    redis.call('SET', P.settled .. id, token, 'PX', marker_ttl)
    if is_release == '1' and release_at ~= '' then
      release_until(id, m, release_at, woken)
    elseif is_release == '1' then
      release(id, m, woken)
    elseif is_release == '2' then
      requeue(id, m, woken)
    else
      redis.call('DEL', P.message .. id)
      if result then
        store_result(result)
      end
      if m.flow then  -- free its slot; its unique key too, unless it is retried
        local again = false
        for _, env in ipairs(follow) do
          again = again or env.task_id == m.task_id
        end
        flow_release(m.flow, m.task_id, not again, woken)
      end
      for _, env in ipairs(follow) do
        publish(env, woken)
      end
      add_tally(tallies, tally, runtime)
    end
    accepted[s] = 1
  elseif retry and redis.call('GET', P.settled .. id) == token then
    accepted[s] = 1  -- applied already: this is a retry
  else
    accepted[s] = 0
  end
end
count_tasks(minute, tallies)
wake(woken)
return accepted
