"""Lua scripts of the distributed lock (one implementation for Redis and ``mem://``).

Keys of one lock share the hash tag ``{name:key}`` (see ``_keys.base_key``):

* ``<base>:h`` hash: owner token, fence, ttl, host, pid, at (ms), rid, tid — exists while held
* ``<base>:f`` fence counter (string), expires after ``fence_idle_ms`` without acquisitions
* ``<base>:q`` sorted set of waiter tokens, scored by arrival (server µs): the FIFO queue
* ``<base>:w`` hash waiter token -> ``deadline_ms|channel|ttl_ms|host|pid|rid|tid``

Fences are ``max(counter + 1, server time in µs)``: strictly increasing while the counter
lives, and still increasing after it expired, because server time has moved on by then.
On release the lock is handed straight to the first live waiter and the waiter's process
is told on its channel (payload ``token:fence``), so the lock is never free while live
waiters queue and new arrivals cannot overtake them.
"""

from __future__ import annotations

from interlock.backends._script import Script

# Shared Lua helpers, prepended to the scripts that need them.
_HELPERS = r"""
local function now_parts()
  local t = redis.call('TIME')
  local sec, usec = tonumber(t[1]), tonumber(t[2])
  return sec * 1000 + math.floor(usec / 1000), sec * 1000000 + usec
end

local function mint_fence(fence_key, now_us, idle_ms)
  local last = tonumber(redis.call('GET', fence_key) or '0')
  local fence = math.max(last + 1, now_us)
  redis.call('SET', fence_key, string.format('%d', fence), 'PX', idle_ms)
  return fence
end

local function grant(keys, token, ttl_ms, info, now_ms, now_us, idle_ms)
  local fence = mint_fence(keys[2], now_us, idle_ms)
  redis.call('DEL', keys[1])
  redis.call('HSET', keys[1], 'owner', token, 'fence', string.format('%d', fence),
    'ttl', ttl_ms, 'at', string.format('%d', now_ms),
    'host', info[1] or '', 'pid', info[2] or '', 'rid', info[3] or '', 'tid', info[4] or '')
  redis.call('PEXPIRE', keys[1], ttl_ms)
  return fence
end

local function split(s)
  local out = {}
  for part in string.gmatch(s .. '|', '([^|]*)|') do out[#out + 1] = part end
  return out
end

-- First live waiter (dead ones, whose registration deadline passed, are dropped).
local function head_waiter(keys, now_ms)
  while true do
    local head = redis.call('ZRANGE', keys[3], 0, 0)[1]
    if not head then return nil, nil end
    local raw = redis.call('HGET', keys[4], head)
    if raw then
      local w = split(raw)
      if tonumber(w[1]) > now_ms then return head, w end
    end
    redis.call('ZREM', keys[3], head)
    redis.call('HDEL', keys[4], head)
  end
end

-- Give the free lock to the first live waiter and wake its process.
local function hand_off(keys, now_ms, now_us, idle_ms)
  local head, w = head_waiter(keys, now_ms)
  if not head then return 0 end
  redis.call('ZREM', keys[3], head)
  redis.call('HDEL', keys[4], head)
  local fence = grant(keys, head, tonumber(w[3]), {w[4], w[5], w[6], w[7]}, now_ms, now_us, idle_ms)
  redis.call('PUBLISH', w[2], head .. ':' .. string.format('%d', fence))
  return 1
end
"""

ACQUIRE = Script(
    "lock_acquire",
    r"""-- Acquire a lock, or join its FIFO queue.
-- KEYS: 1 lock hash, 2 fence counter, 3 waiter queue, 4 waiter info
-- ARGV: 1 token, 2 ttl_ms, 3 host, 4 pid, 5 request id, 6 trace id,
--       7 queue registration ms (0 = do not queue; dead waiters drop out after it),
--       8 wake channel, 9 fence idle ms
-- Returns: {1, fence}             acquired now
--          {2, fence}             already ours (handed off to us, or a retried call)
--          {0, wait_ms, fence, host, pid, at, rid, tid}   not ours: wait about wait_ms
"""
    + _HELPERS
    + r"""
local now_ms, now_us = now_parts()
local token = ARGV[1]
local held = redis.call('HMGET', KEYS[1], 'owner', 'fence', 'host', 'pid', 'at', 'rid', 'tid')
if held[1] == token then return {2, tonumber(held[2])} end
if not held[1] then
  local head = head_waiter(KEYS, now_ms)
  if (not head) or head == token then
    redis.call('ZREM', KEYS[3], token)
    redis.call('HDEL', KEYS[4], token)
    local info = {ARGV[3], ARGV[4], ARGV[5], ARGV[6]}
    return {1, grant(KEYS, token, ARGV[2], info, now_ms, now_us, ARGV[9])}
  end
end
local registration = tonumber(ARGV[7])
if registration > 0 then
  redis.call('ZADD', KEYS[3], 'NX', now_us, token)
  redis.call('HSET', KEYS[4], token, table.concat({string.format('%d', now_ms + registration),
    ARGV[8], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]}, '|'))
end
local wait_ms = 100
if held[1] then wait_ms = redis.call('PTTL', KEYS[1]) end
return {0, wait_ms, held[2] or false, held[3] or false, held[4] or false, held[5] or false,
        held[6] or false, held[7] or false}
""",
)

RELEASE = Script(
    "lock_release",
    r"""-- Release a lock we own (compare-and-delete) and hand it to the first live waiter.
-- KEYS: 1 lock hash, 2 fence counter, 3 waiter queue, 4 waiter info
-- ARGV: 1 token, 2 fence idle ms
-- Returns: 1 released, 0 not ours (expired or taken over)
"""
    + _HELPERS
    + r"""
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local now_ms, now_us = now_parts()
hand_off(KEYS, now_ms, now_us, ARGV[2])
return 1
""",
)

CANCEL = Script(
    "lock_cancel",
    r"""-- A waiter gives up (timeout, cancellation): leave the queue; if the lock was
-- handed to us meanwhile, pass it on.
-- KEYS: 1 lock hash, 2 fence counter, 3 waiter queue, 4 waiter info
-- ARGV: 1 token, 2 fence idle ms
-- Returns: 1 the lock had been handed to us and was passed on, 0 otherwise
"""
    + _HELPERS
    + r"""
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local now_ms, now_us = now_parts()
hand_off(KEYS, now_ms, now_us, ARGV[2])
return 1
""",
)

EXTEND = Script(
    "lock_extend",
    r"""-- Reset the TTL of a lock we own.
-- KEYS: 1 lock hash
-- ARGV: 1 token, 2 ttl_ms
-- Returns: 1 extended, 0 not ours (lost)
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[1], 'ttl', ARGV[2])
return 1
""",
)

INFO = Script(
    "lock_info",
    r"""-- Read the holder of a lock.
-- KEYS: 1 lock hash
-- ARGV: none
-- Returns: {pttl_ms, field, value, ...} or {-2} when free
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -2 then return {-2} end
local out = {pttl}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do out[#out + 1] = all[i] end
return out
""",
)

FENCED_SET = Script(
    "fenced_set",
    r"""-- Write a value guarded by a fence: refused when a newer fence has written.
-- KEYS: 1 resource hash (fields fence, value)
-- ARGV: 1 fence, 2 value, 3 ttl_ms (0 = no expiry)
-- Returns: 1 written, 0 refused (stored fence is greater)
local stored = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if stored > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'value', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
""",
)
