-- Shared by every liteq script: scripts.py puts this in front of each one, after a
-- prelude that defines the key names (from keys.py, so no script spells one):
--   KEY  the fixed keys (KEY.seq, KEY.queues, KEY.leases, ...)
--   P    the prefixes of key families (P.message .. id, P.ready .. queue, ...)
-- ARGV holds the script's own arguments, read in order with nextarg().
--
-- A message is a HASH with short fields:
--   t task id, n task name, q queue, p priority, r run_at (eta or publish time),
--   x expires ('' none), a acks_late ('1'/'0'), c content type, h header, b body,
--   d deliveries, w holder and k token (only while leased),
--   f flow control json (messages.Flow; absent for most), g the flow key it waits on
--   while blocked

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

-- -- flow control (liteq.flow; the SQLite transport's flow.py does the same) ---------
-- A message under a concurrency or rate limit is ready only once it has a slot
-- (flow:<key> used below its limit) and a token (rl:<key>); else it waits blocked in
-- gate:<key>. Ready and leased messages of a concurrency key hold its slots; the
-- settle that ends one frees its slot and admits the next blocked one. A key whose
-- token (or a blocked eta) is due is in flowdue; claims wake due keys first.

-- A token from the bucket ``key`` (refilled ``rate`` a second up to ``capacity``):
-- 0 when taken, else the seconds until one is there.
local function take_bucket(key, rate, capacity, now)
  local bkey = P.ratelimit .. key
  local f = redis.call('HMGET', bkey, 'tokens', 'updated')
  local tokens = capacity
  if f[1] then
    tokens = math.min(capacity, tonumber(f[1]) + math.max(0, now - tonumber(f[2])) * rate)
  end
  -- An idle bucket refills to capacity; after that it need not be kept.
  local keep_ms = math.ceil(capacity / rate * 1000) + 1000
  if tokens >= 1 then
    redis.call('HSET', bkey, 'tokens', exact(tokens - 1), 'updated', exact(now))
    redis.call('PEXPIRE', bkey, keep_ms)
    return 0
  end
  redis.call('HSET', bkey, 'tokens', exact(tokens), 'updated', exact(now))
  redis.call('PEXPIRE', bkey, keep_ms)
  return (1 - tokens) / rate
end

local function flow_count(key, field)
  return tonumber(redis.call('HGET', P.flow .. key, field) or '0')
end

local function flow_add(key, field, n)
  if redis.call('HINCRBY', P.flow .. key, field, n) < 0 then
    redis.call('HSET', P.flow .. key, field, 0)
  end
end

-- Look at ``key`` again no later than ``due`` (server seconds).
local function set_due(key, due)
  redis.call('ZADD', KEY.flow_due, 'LT', exact(due), key)
end

local function flow_forget(key)
  if flow_count(key, 'used') <= 0 and flow_count(key, 'waiting') <= 0
      and not redis.call('ZSCORE', KEY.flow_due, key) then
    redis.call('DEL', P.flow .. key)
  end
end

-- Take a slot and a token for flow ``f``: nil when both were there, else the key it
-- waits on and when to look again (nil: when a slot is freed).
local function flow_admit(f, now, name)
  if f.ck and flow_count(f.ck, 'used') >= (f.cl or 1) then
    return f.ck, nil
  end
  local rate = f.r
  if f.rk then  -- a rate set at run time (app.control.rate_limit) wins
    local override = redis.call('HGET', KEY.rate_overrides, name)
    if override then
      rate = tonumber(override)
    end
  end
  if f.rk and rate and rate > 0 then
    local wait = take_bucket(f.rk, rate, f.b or 1, now)
    if wait > 0 then
      return f.rk, now + wait
    end
  end
  if f.ck then
    flow_add(f.ck, 'used', 1)
  end
  return nil, nil
end

-- Message ``id`` (of ``queue``) waits blocked on ``gate``.
local function block(id, gate, priority, queue)
  redis.call('ZADD', P.gate .. gate, -tonumber(priority), id)
  redis.call('HSET', P.message .. id, 'g', gate)
  redis.call('HINCRBY', KEY.blocked, queue, 1)
  flow_add(gate, 'waiting', 1)
end

local function unblock(id, gate, queue)
  redis.call('ZREM', P.gate .. gate, id)
  redis.call('HDEL', P.message .. id, 'g')
  if redis.call('HINCRBY', KEY.blocked, queue, -1) <= 0 then
    redis.call('HDEL', KEY.blocked, queue)
  end
  flow_add(gate, 'waiting', -1)
end

-- Admit the blocked messages of ``key`` that can go now, in order (priority, eta,
-- arrival); a head that waits on its other key moves there. Returns how many.
-- The first blocked message of ``key`` whose time has come, with its fields; those
-- waiting for an eta (a retry's countdown, a release until later) are passed over, as
-- the SQLite claim orders them by eta. Nil and the earliest eta when none is due.
local function flow_head(key, now)
  local earliest = nil
  for _, id in ipairs(redis.call('ZRANGE', P.gate .. key, 0, 49)) do
    local m = redis.call('HMGET', P.message .. id, 'f', 'r', 'q', 'p', 'n')
    if not m[1] or tonumber(m[2]) <= now then
      return id, m
    end
    if not earliest or tonumber(m[2]) < earliest then
      earliest = tonumber(m[2])
    end
  end
  return nil, earliest
end

local function flow_wake(key, now, woken)
  local admitted = 0
  redis.call('ZREM', KEY.flow_due, key)
  while true do
    local id, m = flow_head(key, now)
    if not id then
      if m then  -- only etas to come: look again at the first
        set_due(key, m)
      end
      break
    end
    if not m[1] then  -- gone (purged): forget it
      redis.call('ZREM', P.gate .. key, id)
      flow_add(key, 'waiting', -1)
    else
      local gate, due = flow_admit(cjson.decode(m[1]), now, m[5])
      if not gate then
        unblock(id, key, m[3])
        redis.call('ZADD', P.ready .. m[3], -tonumber(m[4]), id)
        woken[m[3]] = true
        admitted = admitted + 1
      else
        if due then
          set_due(gate, due)
        end
        if gate == key then
          break
        end
        unblock(id, key, m[3])
        block(id, gate, m[4], m[3])
      end
    end
  end
  flow_forget(key)
  return admitted
end

-- Wake every flow key whose time has come (a claim does, before it pops).
local function flow_wake_due(now, woken)
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEY.flow_due, '-inf', exact(now),
                                  'LIMIT', 0, 100)) do
    flow_wake(key, now, woken)
  end
end

-- A message that held a slot is gone (settled or dropped): free the slot, admit the
-- next of its key; free its unique key when the task ``finished``.
local function flow_release(text, task_id, finished, woken)
  local f = cjson.decode(text)
  if f.ck then
    flow_add(f.ck, 'used', -1)
    flow_wake(f.ck, lease_now(''), woken)
  end
  if finished and f.uk and not f.uu then
    local ukey = P.unique .. f.uk
    if redis.call('GET', ukey) == task_id then
      redis.call('DEL', ukey)
    end
  end
end

-- -- messages ----------------------------------------------------------------------

-- One envelope as scripts.py packs it (14 arguments).
local function read_envelope()
  return {
    time_hex = nextarg(), score = nextarg(), task_id = nextarg(), name = nextarg(),
    queue = nextarg(), priority = nextarg(), run_at = nextarg(), expires = nextarg(),
    acks_late = nextarg(), content_type = nextarg(), header = nextarg(), body = nextarg(),
    scheduled = nextarg(), flow = nextarg(),
  }
end

-- Store a message: ready, or scheduled until its eta. Its id sorts by run_at, then
-- arrival, so a queue's ZSET (score -priority) keeps priority -> eta -> arrival order.
-- Returns the task id it stands for: a unique message whose key a waiting or running
-- task holds is not stored, and stands for that task.
local function publish(env, woken)
  local f = nil
  if env.flow ~= '' then
    f = cjson.decode(env.flow)
    if f.uk then
      local ukey = P.unique .. f.uk
      local held = redis.call('GET', ukey)
      if held and held ~= env.task_id then
        return held
      end
      if f.ux then
        local ttl = math.ceil((f.ux - lease_now('')) * 1000)
        if ttl > 0 then
          redis.call('SET', ukey, env.task_id, 'PX', ttl)
        end
      else
        redis.call('SET', ukey, env.task_id)
      end
    end
  end
  local seq = redis.call('INCR', KEY.seq)
  local id = env.time_hex .. string.format('%012x', seq)
  redis.call('HSET', P.message .. id, 't', env.task_id, 'n', env.name, 'q', env.queue,
             'p', env.priority, 'r', env.run_at, 'x', env.expires, 'a', env.acks_late,
             'c', env.content_type, 'h', env.header, 'b', env.body, 'd', 0)
  redis.call('SADD', KEY.queues, env.queue)
  if f then
    redis.call('HSET', P.message .. id, 'f', env.flow)
  end
  if f and (f.ck or f.rk) then
    local gate, due
    if env.scheduled == '1' then  -- blocked until its eta, on its first key
      gate, due = f.ck or f.rk, tonumber(env.run_at)
    elseif f.ck and flow_count(f.ck, 'waiting') > 0 then  -- never overtake
      gate = f.ck
    elseif f.rk and flow_count(f.rk, 'waiting') > 0 then
      gate = f.rk
    else
      gate, due = flow_admit(f, lease_now(''), env.name)
    end
    if gate then
      block(id, gate, env.priority, env.queue)
      if due then
        set_due(gate, due)
      end
      return env.task_id
    end
  end
  if env.scheduled == '1' then
    redis.call('ZADD', P.scheduled .. env.queue, env.run_at, id)
  else
    redis.call('ZADD', P.ready .. env.queue, env.score, id)
  end
  woken[env.queue] = true
  return env.task_id
end

-- Tell idle workers of each queue in ``woken`` to look.
local function wake(woken)
  for queue in pairs(woken) do
    redis.call('PUBLISH', P.wake .. queue, '')
  end
end

-- What the lease-ending paths need to know about a message.
local function leased_message(id)
  local f = redis.call('HMGET', P.message .. id, 'k', 'w', 'q', 't', 'p', 'd', 'a', 'n', 'f')
  return {token = f[1], holder = f[2], queue = f[3], task_id = f[4], priority = f[5],
          deliveries = tonumber(f[6]), acks_late = f[7], name = f[8], flow = f[9]}
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
  redis.call('ZADD', P.ready .. m.queue, -(tonumber(m.priority) or 0), id)
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
-- A message under a concurrency or rate limit gives its slot back and waits blocked.
local function release_until(id, m, run_at, woken)
  local key = P.message .. id
  if m.deliveries > 0 then
    redis.call('HINCRBY', key, 'd', -1)
  end
  redis.call('HDEL', key, 'w', 'k')
  redis.call('HSET', key, 'r', run_at)
  local f = m.flow and cjson.decode(m.flow)
  if f and (f.ck or f.rk) then
    block(id, f.ck or f.rk, m.priority, m.queue)
    set_due(f.ck or f.rk, tonumber(run_at))
    if f.ck then
      flow_add(f.ck, 'used', -1)
      flow_wake(f.ck, lease_now(''), woken)
    end
    return
  end
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
  -- the envelope, for the caller's record of it (the call kept, a chord part counted)
  report.lost[#report.lost + 1] = redis.call('HMGET', P.message .. id, 't', 'n', 'q', 'p',
                                             'r', 'x', 'a', 'c', 'h', 'b')
  redis.call('DEL', P.message .. id)
  if m.flow then  -- its slot comes back, its unique key is free
    flow_release(m.flow, m.task_id, true, woken)
  end
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
