-- STORE_RESULTS: store final results (results kept apart from the broker).
-- ARGV: count, results... Returns how many were stored.
local count = tonumber(nextarg())
for _ = 1, count do
  store_result(read_result())
end
return count
