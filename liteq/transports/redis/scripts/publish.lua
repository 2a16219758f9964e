-- PUBLISH: store messages, all or none, and wake the workers of their queues.
-- ARGV: publish id, marker TTL (ms), count, envelopes...
-- A publish id already seen means this is a retry of a publish that was applied but
-- whose reply was lost: nothing is stored twice. Returns the task id each envelope
-- stands for (another task's, for a unique message whose key is held), or 0 for a
-- retried publish.
local publish_id, marker_ttl = nextarg(), nextarg()
if not redis.call('SET', P.published .. publish_id, '1', 'NX', 'PX', marker_ttl) then
  return 0
end
local count = tonumber(nextarg())
local woken, ids = {}, {}
for i = 1, count do
  ids[i] = publish(read_envelope(), woken)
end
wake(woken)
return ids
