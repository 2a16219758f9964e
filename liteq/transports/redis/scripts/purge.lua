-- PURGE: delete waiting (ready and scheduled) messages of the given queues, or of
-- every queue when none is given (messages blocked by flow control stay).
-- ARGV: queue count, queues...
-- Returns how many were deleted.
local queues = {}
for i = 1, tonumber(nextarg()) do
  queues[i] = nextarg()
end
if #queues == 0 then
  queues = redis.call('SMEMBERS', KEY.queues)
end
local deleted = 0
for _, queue in ipairs(queues) do
  for _, zkey in ipairs({P.ready .. queue, P.scheduled .. queue}) do
    local ids = redis.call('ZRANGE', zkey, 0, -1)
    for start = 1, #ids, 500 do
      local batch = {}
      for i = start, math.min(start + 499, #ids) do
        batch[#batch + 1] = P.message .. ids[i]
        -- a ready message of a concurrency key holds a slot; a unique one its key
        local m = redis.call('HMGET', P.message .. ids[i], 'f', 't')
        if m[1] then
          flow_release(m[1], m[2], true, {})
        end
      end
      deleted = deleted + redis.call('DEL', unpack(batch))
    end
    redis.call('DEL', zkey)
  end
end
return deleted
