-- CHORD_PART: record that a header task of a chord has its final result stored.
-- ARGV: chord id, member (task) id, its place in the header, header size, milliseconds
-- to keep ('' = for ever).
-- Returns, to the member whose record completed the chord, every member's id in header
-- order, each time it asks (so a redelivered unlock sends the body again rather than
-- never); to every other member an empty list. One member of a chord, and only one,
-- sends its body.
local chord = P.chord .. nextarg()
local member, index, size, keep = nextarg(), nextarg(), tonumber(nextarg()), nextarg()
local by = chord .. ':by'
if redis.call('ZADD', chord, 'NX', index, member) == 1 and redis.call('ZCARD', chord) == size then
  redis.call('SET', by, member)
end
if keep ~= '' then
  redis.call('PEXPIRE', chord, keep)
  redis.call('PEXPIRE', by, keep)
end
if redis.call('GET', by) == member then
  return redis.call('ZRANGE', chord, 0, -1)
end
return {}
