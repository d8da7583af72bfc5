"""Lua scripts of the distributed lock (one implementation for Redis and ``mem://``).

Keys of one lock share the hash tag ``{name:key}`` (see ``_keys.base_key``):

* ``<base>:h`` the lock, a string ``token|fence|at_ms|ttl_ms|host|pid|rid|tid`` with a TTL
  (``ttl_ms`` is the TTL it was acquired with; ``extend`` changes only the key's expiry)
* ``<base>:f`` fence counter (string), expires after ``fence_idle_ms`` without acquisitions
* ``<base>:q`` sorted set of waiter tokens, scored by arrival (server µs): the FIFO queue
* ``<base>:w`` hash waiter token -> ``deadline_ms|channel|ttl_ms|host|pid|rid|tid``
* ``<base>:s:<token>`` signal list of one blocking waiter (channel ``''``): the hand-off
  pushes the fence there and the waiter's BLPOP returns it; it lives no longer than the lock

Every ``redis.call`` costs a few µs inside Redis, so the uncontended paths use few of them:
acquire is GET, EXISTS, TIME, GET+SET of the fence and one SET; release is GET, EXISTS, DEL.

Fences are ``max(counter + 1, server time in µs)``: strictly increasing while the counter
lives, and still increasing after it expired, because server time has moved on by then.
On release the lock is handed straight to the first live waiter and the waiter is told:
on its process's pub/sub channel (payload ``token:fence``), or, for a waiter registered
with an empty channel, on its own signal list (a blocking waiter's BLPOP, no thread hop).
The lock is never free while live waiters queue, and new arrivals cannot overtake them.
"""

from __future__ import annotations

from enum import IntEnum

from interlock.backends._script import Script
from interlock.lock._core import RESTART_GRACE_S

# Shared Lua helpers, prepended to the scripts that need them.
_HELPERS = r"""
-- (plain string.find: Lua patterns such as gmatch cost ~10 µs per call inside Redis)
local function split(s)
  local out, i = {}, 1
  while true do
    local j = string.find(s, '|', i, true)
    if not j then
      out[#out + 1] = string.sub(s, i)
      return out
    end
    out[#out + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

local function owner_of(value)
  if not value then return nil end
  return string.sub(value, 1, string.find(value, '|', 1, true) - 1)
end

-- The signal list of a blocking waiter: '<base>:s:<token>' next to '<base>:h' (same slot).
local function signal_key(keys, token)
  return string.sub(keys[1], 1, -2) .. 's:' .. token
end

local function now_parts()
  local t = redis.call('TIME')
  local sec, usec = tonumber(t[1]), tonumber(t[2])
  return sec * 1000 + math.floor(usec / 1000), sec * 1000000 + usec
end

-- Mint the next fence and store the lock for `token`; `holder` is 'host|pid|rid|tid'.
local function grant(keys, token, ttl_ms, holder, now_ms, now_us, idle_ms)
  local fence = math.max(tonumber(redis.call('GET', keys[2]) or '0') + 1, now_us)
  local f = string.format('%d', fence)
  redis.call('SET', keys[2], f, 'PX', idle_ms)
  redis.call('SET', keys[1], table.concat(
    {token, f, string.format('%d', now_ms), ttl_ms, holder}, '|'), 'PX', ttl_ms)
  return fence
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

-- Give the lock to the first live waiter (overwriting the lock key) and wake it; 0 when
-- no live waiter queues (the caller then deletes the lock key).
local function hand_off(keys, idle_ms)
  local now_ms, now_us = now_parts()
  local head, w = head_waiter(keys, now_ms)
  if not head then return 0 end
  redis.call('ZREM', keys[3], head)
  redis.call('HDEL', keys[4], head)
  local holder = table.concat({w[4], w[5], w[6], w[7]}, '|')
  local fence = grant(keys, head, w[3], holder, now_ms, now_us, idle_ms)
  if w[2] == '' then
    local signal = signal_key(keys, head)
    redis.call('RPUSH', signal, string.format('%d', fence))
    redis.call('PEXPIRE', signal, w[3])
  else
    redis.call('PUBLISH', w[2], head .. ':' .. string.format('%d', fence))
  end
  return 1
end
"""

# A lock whose fence counter is missing was never taken, idle for FENCE_IDLE_MS, or
# forgotten by a restart without persistence: then, while the server is younger than
# RESTART_GRACE_S, it is not granted (the old holders are re-checking their leases).
# (Inlined, not a helper: this rare check must not cost the fast path a definition.)
_RESTARTING = (
    "tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)')) < "
    + str(RESTART_GRACE_S)
)

_FAST_TAKE = r"""
local token = ARGV[1]
local held = redis.call('GET', KEYS[1])
if held then
  if string.sub(held, 1, #token + 1) == token .. '|' then
    local j = string.find(held, '|', #token + 2, true)
    return {2, tonumber(string.sub(held, #token + 2, j - 1))}
  end
elseif redis.call('EXISTS', KEYS[3]) == 0 then
  local last = redis.call('GET', KEYS[2])
  if not last and """ + _RESTARTING + r""" then return {0, 100, false} end
  local t = redis.call('TIME')
  local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local fence = math.max(tonumber(last or '0') + 1, now_us)
  local f = string.format('%d', fence)
  redis.call('SET', KEYS[2], f, 'PX', ARGV[6])
  redis.call('SET', KEYS[1], table.concat({token, f, string.format('%d', math.floor(now_us / 1000)),
    ARGV[2], ARGV[3]}, '|'), 'PX', ARGV[2])
  return {1, fence}
end
"""

class AcquireReply(IntEnum):
    """What :data:`ACQUIRE` answered: the first element of its reply."""

    REFUSED = 0  # {0, wait_ms, lock}: not ours; retry after about wait_ms unless woken
    GRANTED = 1  # {1, fence}: acquired now
    HANDED_OFF = 2  # {2, fence}: already ours: handed off to us, or a retried call


ACQUIRE = Script(
    "lock_acquire",
    r"""-- Acquire a lock, or join its FIFO queue.
-- KEYS: 1 lock, 2 fence counter, 3 waiter queue, 4 waiter info
-- ARGV: 1 token, 2 ttl_ms, 3 holder 'host|pid|rid|tid',
--       4 queue registration ms (0 = do not queue; a dead waiter drops out after it),
--       5 wake channel ('' = the waiter's signal list), 6 fence idle ms
-- Returns {AcquireReply, ...}:
--   {1, fence}          GRANTED: acquired now
--   {2, fence}          HANDED_OFF: already ours (handed off to us, or a retried call)
--   {0, wait_ms, lock}  REFUSED: not ours: the holder's lock string (false if none: free,
--                       or not granted in a restarted server's grace); retry after about
--                       wait_ms unless woken earlier
"""
    + _FAST_TAKE
    + _HELPERS
    + r"""
local registration = tonumber(ARGV[4])
local owner = owner_of(held)
local now_ms, now_us = now_parts()
if not owner then
  local head = head_waiter(KEYS, now_ms)
  local restarting = redis.call('EXISTS', KEYS[2]) == 0 and """ + _RESTARTING + r"""
  if ((not head) or head == token) and not restarting then
    if registration > 0 then
      redis.call('ZREM', KEYS[3], token)
      redis.call('HDEL', KEYS[4], token)
    end
    return {1, grant(KEYS, token, ARGV[2], ARGV[3], now_ms, now_us, ARGV[6])}
  end
end
if registration > 0 then
  redis.call('ZADD', KEYS[3], 'NX', now_us, token)
  redis.call('HSET', KEYS[4], token, table.concat({string.format('%d', now_ms + registration),
    ARGV[5], ARGV[2], ARGV[3]}, '|'))
end
local wait_ms = 100
if owner then wait_ms = redis.call('PTTL', KEYS[1]) end
return {0, wait_ms, held or false}
""",
)

RELEASE = Script(
    "lock_release",
    r"""-- Release a lock we own (compare-and-delete) and hand it to the first live waiter.
-- KEYS: 1 lock, 2 fence counter, 3 waiter queue, 4 waiter info
-- ARGV: 1 token, 2 fence idle ms
-- Returns: 1 released, 0 not ours (expired or taken over)
local held = redis.call('GET', KEYS[1])
if not held or string.sub(held, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return 0 end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
"""
    + _HELPERS
    + r"""
if hand_off(KEYS, ARGV[2]) == 0 then redis.call('DEL', KEYS[1]) end
return 1
""",
)

CANCEL = Script(
    "lock_cancel",
    r"""-- A waiter gives up (timeout, cancellation): leave the queue; if the lock was
-- handed to us meanwhile, pass it on.
-- KEYS: 1 lock, 2 fence counter, 3 waiter queue, 4 waiter info
-- ARGV: 1 token, 2 fence idle ms
-- Returns: 1 the lock had been handed to us and was passed on, 0 otherwise
"""
    + _HELPERS
    + r"""
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('DEL', signal_key(KEYS, ARGV[1]))
if owner_of(redis.call('GET', KEYS[1])) ~= ARGV[1] then return 0 end
if hand_off(KEYS, ARGV[2]) == 0 then redis.call('DEL', KEYS[1]) end
return 1
""",
)

EXTEND = Script(
    "lock_extend",
    r"""-- Reset the TTL of a lock we own.
-- KEYS: 1 lock
-- ARGV: 1 token, 2 ttl_ms
-- Returns: 1 extended, 0 not ours (lost)
local held = redis.call('GET', KEYS[1])
if not held or string.sub(held, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
""",
)

INFO = Script(
    "lock_info",
    r"""-- Read the holder of a lock.
-- KEYS: 1 lock
-- ARGV: none
-- Returns: {pttl_ms, lock string} or {-2} when free
local held = redis.call('GET', KEYS[1])
if not held then return {-2} end
return {redis.call('PTTL', KEYS[1]), held}
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
