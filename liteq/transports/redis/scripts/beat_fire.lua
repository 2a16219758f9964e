-- BEAT_FIRE: advance a beat entry from the next run a beat read to the one after,
-- and publish its message, only if no other beat advanced it first (compare-and-set).
-- ARGV: name, expected next run, new next run, fired at ('' for a skipped tick),
--       has envelope ('1'/'0'), [envelope].
-- Returns 1 when this beat fired the tick, 0 when another one did.
local name, expected, next_run_at, fired_at = nextarg(), nextarg(), nextarg(), nextarg()
local envelope = nil
if nextarg() == '1' then
  envelope = read_envelope()
end
local key = P.beat .. name
local current = redis.call('HGET', key, 'next_run_at')
if not current or tonumber(current) ~= tonumber(expected) then
  return 0
end
redis.call('HSET', key, 'next_run_at', next_run_at)
if fired_at ~= '' then
  redis.call('HSET', key, 'last_run_at', fired_at)
  redis.call('HINCRBY', key, 'total_run_count', 1)
end
if envelope then
  local woken = {}
  publish(envelope, woken)
  wake(woken)
end
return 1
