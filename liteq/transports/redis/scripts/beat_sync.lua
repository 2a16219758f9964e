-- BEAT_SYNC: make the stored schedule match the code's entries.
-- ARGV: count, then (name, definition, schedule, next run at) per entry.
-- An unchanged entry keeps its run times; a new or changed one takes the given next
-- run; stored entries not given are retired.
local wanted = {}
for _ = 1, tonumber(nextarg()) do
  local name, definition, schedule, next_run_at = nextarg(), nextarg(), nextarg(), nextarg()
  wanted[name] = true
  local key = P.beat .. name
  local stored = redis.call('HMGET', key, 'definition', 'schedule', 'last_run_at',
                            'total_run_count')
  if stored[1] ~= definition or stored[2] ~= schedule then
    redis.call('DEL', key)
    redis.call('HSET', key, 'definition', definition, 'schedule', schedule,
               'next_run_at', next_run_at, 'total_run_count', stored[4] or '0')
    if stored[3] then
      redis.call('HSET', key, 'last_run_at', stored[3])
    end
  end
  redis.call('SADD', KEY.beat, name)
end
for _, name in ipairs(redis.call('SMEMBERS', KEY.beat)) do
  if not wanted[name] then
    redis.call('DEL', P.beat .. name)
    redis.call('SREM', KEY.beat, name)
  end
end
return 1
