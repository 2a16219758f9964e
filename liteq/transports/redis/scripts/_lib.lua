-- Shared by every liteq script: scripts.py puts this in front of each one, after a
-- prelude that defines the key names (from keys.py, so no script spells one):
--   KEY  the fixed keys (KEY.seq, KEY.queues, KEY.leases, ...)
--   P    the prefixes of key families (P.message .. id, P.ready .. queue, ...)
-- ARGV holds the script's own arguments, read in order with nextarg().
--
-- A message is a HASH with short fields:
--   t task id, n task name, q queue, p priority, r run_at (eta or publish time),
--   x expires ('' none), a acks_late ('1'/'0'), c content type, h header, b body,
--   d deliveries, w holder and k token (only while leased)

local cursor = 0
local function nextarg()
  cursor = cursor + 1
  return ARGV[cursor]
end

-- A number as a string that converts back to the same double.
local function exact(x)
  return string.format('%.17g', x)
end

-- Lease time: the Redis server's clock, so hosts with skewed clocks agree (a test may
-- pass its own clock instead).
local function lease_now(given)
  if given ~= '' then
    return tonumber(given)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- -- messages ----------------------------------------------------------------------

-- One envelope as scripts.py packs it (13 arguments).
local function read_envelope()
  return {
    time_hex = nextarg(), score = nextarg(), task_id = nextarg(), name = nextarg(),
    queue = nextarg(), priority = nextarg(), run_at = nextarg(), expires = nextarg(),
    acks_late = nextarg(), content_type = nextarg(), header = nextarg(), body = nextarg(),
    scheduled = nextarg(),
  }
end

-- Store a message: ready, or scheduled until its eta. Its id sorts by run_at, then
-- arrival, so a queue's ZSET (score -priority) keeps priority -> eta -> arrival order.
local function publish(env, woken)
  local seq = redis.call('INCR', KEY.seq)
  local id = env.time_hex .. string.format('%012x', seq)
  redis.call('HSET', P.message .. id, 't', env.task_id, 'n', env.name, 'q', env.queue,
             'p', env.priority, 'r', env.run_at, 'x', env.expires, 'a', env.acks_late,
             'c', env.content_type, 'h', env.header, 'b', env.body, 'd', 0)
  if env.scheduled == '1' then
    redis.call('ZADD', P.scheduled .. env.queue, env.run_at, id)
  else
    redis.call('ZADD', P.ready .. env.queue, env.score, id)
  end
  redis.call('SADD', KEY.queues, env.queue)
  woken[env.queue] = true
end

-- Tell idle workers of each queue in ``woken`` to look.
local function wake(woken)
  for queue in pairs(woken) do
    redis.call('PUBLISH', P.wake .. queue, '')
  end
end

-- What the lease-ending paths need to know about a message.
local function leased_message(id)
  local f = redis.call('HMGET', P.message .. id, 'k', 'w', 'q', 't', 'p', 'd', 'a', 'n')
  return {token = f[1], holder = f[2], queue = f[3], task_id = f[4], priority = f[5],
          deliveries = tonumber(f[6]), acks_late = f[7], name = f[8]}
end

local function lease_taken(id, queue, task_id, holder)
  redis.call('SADD', P.held .. holder, id)
  redis.call('HINCRBY', KEY.leased, queue, 1)
  redis.call('HINCRBY', KEY.inflight, task_id, 1)
end

local function lease_ended(id, m)
  redis.call('SREM', P.held .. m.holder, id)
  if redis.call('HINCRBY', KEY.leased, m.queue, -1) <= 0 then
    redis.call('HDEL', KEY.leased, m.queue)
  end
  if redis.call('HINCRBY', KEY.inflight, m.task_id, -1) <= 0 then
    redis.call('HDEL', KEY.inflight, m.task_id)
  end
end

-- Back to the ready queue, in its old place (the delivery still counts).
local function requeue(id, m, woken)
  redis.call('HDEL', P.message .. id, 'w', 'k')
  redis.call('ZADD', P.ready .. m.queue, -tonumber(m.priority), id)
  woken[m.queue] = true
end

-- Back to the ready queue as if never delivered (a prefetched task returned).
local function release(id, m, woken)
  if m.deliveries > 0 then
    redis.call('HINCRBY', P.message .. id, 'd', -1)
  end
  requeue(id, m, woken)
end

-- Back to the queue uncounted, but scheduled: ready again at ``run_at`` (epoch s).
local function release_until(id, m, run_at)
  local key = P.message .. id
  if m.deliveries > 0 then
    redis.call('HINCRBY', key, 'd', -1)
  end
  redis.call('HDEL', key, 'w', 'k')
  redis.call('HSET', key, 'r', run_at)
  redis.call('ZADD', P.scheduled .. m.queue, run_at, id)
end

-- -- task counters -----------------------------------------------------------------

-- Group one finished task into ``tallies`` (field -> {count, run time}); '' is none.
local function add_tally(tallies, field, runtime)
  if field == '' then
    return
  end
  local t = tallies[field]
  if t then
    t[1], t[2] = t[1] + 1, t[2] + tonumber(runtime)
  else
    tallies[field] = {1, tonumber(runtime)}
  end
end

-- Add ``tallies`` to the counters of ``minute`` (kept STATS_TTL seconds) and to the
-- totals: a few HINCRBYs per settle call, whatever its size.
local function count_tasks(minute, tallies)
  local key = P.stats .. minute
  local any = false
  for field, t in pairs(tallies) do
    redis.call('HINCRBY', key, field, t[1])
    redis.call('HINCRBY', KEY.stats_total, field, t[1])
    if t[2] > 0 then
      redis.call('HINCRBYFLOAT', key, field .. '\tr', exact(t[2]))
      redis.call('HINCRBYFLOAT', KEY.stats_total, field .. '\tr', exact(t[2]))
    end
    any = true
  end
  if any then
    redis.call('EXPIRE', key, STATS_TTL)
  end
end

-- -- results -----------------------------------------------------------------------

-- A result as scripts.py packs it: task id, fields to set, fields to delete, TTL (ms,
-- '' to keep it for ever).
local function read_result()
  local r = {task_id = nextarg(), set = {}, del = {}}
  for _ = 1, tonumber(nextarg()) do
    r.set[#r.set + 1] = nextarg()
    r.set[#r.set + 1] = nextarg()
  end
  for _ = 1, tonumber(nextarg()) do
    r.del[#r.del + 1] = nextarg()
  end
  r.ttl = nextarg()
  return r
end

local FINAL = {SUCCESS = true, FAILURE = true, REVOKED = true}

local function store_result(r)
  local key = P.result .. r.task_id
  if #r.del > 0 then
    redis.call('HDEL', key, unpack(r.del))
  end
  redis.call('HSET', key, unpack(r.set))
  if r.ttl == '' then
    redis.call('PERSIST', key)
  elseif tonumber(r.ttl) <= 0 then
    redis.call('DEL', key)  -- expired already (stored late)
  else
    redis.call('PEXPIRE', key, r.ttl)
  end
  redis.call('PUBLISH', P.done .. r.task_id, '')
end

-- A lost-task policy: max deliveries, then the "lost" and "exhausted" templates.
local function read_policy()
  return {max_deliveries = tonumber(nextarg()), lost = read_result(),
          exhausted = read_result()}
end

-- A message whose lease was lost: run again (acks_late, deliveries left) or record
-- the policy's failure. The lease must have ended already (lease_ended).
local function apply_lost(id, m, policy, now_wall, report, woken, tallies)
  add_tally(tallies, (m.name or 'unknown') .. '\tLOST\t-1', '0')
  if m.acks_late == '1' and m.deliveries < policy.max_deliveries then
    requeue(id, m, woken)
    report.requeued[#report.requeued + 1] = m.task_id
    return
  end
  redis.call('DEL', P.message .. id)
  local template = policy.exhausted
  if m.acks_late ~= '1' then
    template = policy.lost
  end
  local set = {}
  for i = 1, #template.set do
    set[i] = template.set[i]
  end
  set[#set + 1] = 'task_name'
  set[#set + 1] = m.name
  set[#set + 1] = 'date_done'
  set[#set + 1] = now_wall
  store_result({task_id = m.task_id, set = set, del = template.del, ttl = template.ttl})
  add_tally(tallies, (m.name or 'unknown') .. '\t' .. template.set[2] .. '\t-1', '0')
  report.failed[#report.failed + 1] = m.task_id
end

-- -- leases ------------------------------------------------------------------------

-- Renew the lease of a worker and of its pool processes ("<worker>/<n>"): holders in
-- [worker, worker .. "0") by name. Returns how many holders were renewed.
local function extend_leases(worker, lease_seconds, clock)
  local deadline = lease_now(clock) + tonumber(lease_seconds)
  local renewed = 0
  for _, holder in ipairs(redis.call('ZRANGEBYLEX', KEY.holders, '[' .. worker,
                                     '(' .. worker .. '0')) do
    if redis.call('ZSCORE', KEY.leases, holder) then
      redis.call('ZADD', KEY.leases, 'XX', exact(deadline), holder)
      renewed = renewed + 1
    end
  end
  return renewed
end

-- A holder holds nothing any more: forget its lease.
local function drop_holder(holder)
  redis.call('DEL', P.held .. holder)
  redis.call('ZREM', KEY.leases, holder)
  redis.call('ZREM', KEY.holders, holder)
  redis.call('HDEL', KEY.claims, holder)
end

-- -- control -----------------------------------------------------------------------

-- Drop revocations whose time is up (``now_wall`` epoch seconds); returns how many.
local function forget_revoked(now_wall)
  local gone = redis.call('ZRANGEBYSCORE', KEY.revoked_until, '-inf', '(' .. now_wall,
                          'LIMIT', 0, 1000)
  if #gone > 0 then
    redis.call('HDEL', KEY.revoked, unpack(gone))
    redis.call('ZREM', KEY.revoked_until, unpack(gone))
  end
  return #gone
end

-- Is ``task_id`` revoked (and not yet forgotten) at ``now_wall``?
local function is_revoked(task_id, now_wall)
  local until_at = redis.call('ZSCORE', KEY.revoked_until, task_id)
  if not until_at then
    return false
  end
  return until_at == 'inf' or tonumber(until_at) >= tonumber(now_wall)
end
