-- STORE_STATE: store an interim state (STARTED, RETRY, progress) outside settlement.
-- ARGV: fence id and token ('' '' for none), result.
-- Nothing is written when the fence's lease is no longer held (returns 0); a final
-- state already stored is never overwritten by an interim one (returns 1).
local fence_id, fence_token = nextarg(), nextarg()
local result = read_result()
if fence_id ~= '' then
  if redis.call('HGET', P.message .. fence_id, 'k') ~= fence_token then
    return 0
  end
end
if FINAL[redis.call('HGET', P.result .. result.task_id, 'state')] then
  return 1
end
store_result(result)
return 1
