"""Lua scripts of the distributed lock (one implementation for Redis and ``mem://``).

Keys of one lock share the hash tag ``{name:key}`` (see ``_keys.base_key``; the layout is
``lock._core.lock_keys``, whose suffixes changed with this format: old clients never read it):

* ``<base>:o`` the lock, a string ``token|fence|ttl_ms|host|pid|rid|tid|`` with the lease
  TTL (``ttl_ms`` is the TTL it was acquired with; ``extend`` changes only the key's expiry),
  plus a trailing ``q`` while waiters may queue
* ``<base>:n`` the fence bookkeeping: the last fence (a number; a trailing ``q`` while waiters
  may queue); it expires 60 to 90 s after the last acquisition (``FENCE_IDLE_MS`` and
  ``FENCE_REFRESH_MS``)
* ``<base>:a`` sorted set of waiter tokens, scored by arrival (server µs): the FIFO queue
* ``<base>:d`` hash waiter token -> ``deadline_ms|channel|ttl_ms|host|pid|rid|tid``; the queue
  and this hash expire with the latest registration (a crashed waiter leaves nothing behind)
* ``<base>:s:<token>`` signal list of one blocking waiter (channel ``''``): the hand-off
  pushes the fence there and the waiter's BLPOP returns it; it lives no longer than the lock

Every ``redis.call`` costs Redis a few tenths of a µs (more with many arguments), every
key expiry written about a µs, every script argument and every table in a reply a little,
so the uncontended paths do little: acquire is TIME, one SET of the fence bookkeeping that
also returns its old value (``GET``; its expiry is left alone except about once per
``FENCE_REFRESH_MS``) and one ``SET NX GET`` of the lock, and its reply is the bare fence;
release is GET and DEL. They need no look at the queue: the ``q`` marks say when waiters
may queue (set by every registration, cleared when the queue is found empty; a stale mark
only sends a call down the slow path, which looks at the queue itself). The scripts are
passed only the lock and bookkeeping keys; the queue keys, like the signal lists, are named
from the lock's key (same hash tag, so the same Cluster slot) where the slow paths need
them.

Fences are ``max(last fence + 1, server time in µs)``: strictly increasing while the
bookkeeping lives, and still increasing after it expired, because server time has moved on
by then. On release the lock is handed straight to the first live waiter and the waiter is
told: on its process's pub/sub channel (payload ``token:fence``), or, for a waiter
registered with an empty channel, on its own signal list (a blocking waiter's BLPOP, no
thread hop). The lock is never free while live waiters queue, and new arrivals cannot
overtake them.
"""

from __future__ import annotations

from enum import IntEnum

from interlock.backends._script import Script
from interlock.lock._core import (
    FENCE_IDLE_MS,
    FENCE_REFRESH_MS,
    LOCK_SUFFIXES,
    RESTART_GRACE_S,
)

# The bookkeeping's expiry: at least FENCE_IDLE_MS after the last acquisition, since it is
# refreshed whenever an acquisition falls in another FENCE_REFRESH_MS window of server time
# than the previous one (or the fence counted past the clock).
_LIFE_MS = str(FENCE_IDLE_MS + FENCE_REFRESH_MS)
_WINDOW_US = str(FENCE_REFRESH_MS * 1000)
_QUEUE, _DETAILS = LOCK_SUFFIXES[2][1:], LOCK_SUFFIXES[3][1:]  # after the lock's ':'

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

local function fence_of(value, token)
  return tonumber(string.sub(value, #token + 2, string.find(value, '|', #token + 2, true) - 1))
end

-- The signal list of a blocking waiter: '<base>:s:<token>' next to '<base>:o' (same slot).
local function signal_key(keys, token)
  return string.sub(keys[1], 1, -2) .. 's:' .. token
end

-- All keys of the lock: KEYS (lock, bookkeeping) and the queue's, named from the lock's.
local function all_keys()
  local base = string.sub(KEYS[1], 1, -2)
  return {KEYS[1], KEYS[2], base .. '""" + _QUEUE + r"""', base .. '""" + _DETAILS + r"""'}
end

local function server_us()
  local t = redis.call('TIME')
  return t[1] * 1000000 + t[2]
end

-- The last fence in the bookkeeping's value (nil when it is missing).
local function last_fence(value)
  if not value then return nil end
  if string.byte(value, -1) == 113 then value = string.sub(value, 1, -2) end
  return tonumber(value)
end

-- Set or clear the trailing 'q' (waiters may queue) of the lock or bookkeeping value.
local function mark(key, waiting)
  local value = redis.call('GET', key)
  if not value or (string.byte(value, -1) == 113) == waiting then return end
  if waiting then value = value .. 'q' else value = string.sub(value, 1, -2) end
  redis.call('SET', key, value, 'KEEPTTL')
end

-- Mint the next fence after `last` and store the lock for `token`; `holder` is
-- 'host|pid|rid|tid'; both values are marked when waiters still queue.
local function grant(keys, token, ttl_ms, holder, last, now_us, waiting)
  local fence = now_us
  if last and last >= now_us then fence = last + 1 end
  local f = string.format('%d', fence)
  local q = ''
  if waiting then q = 'q' end
  redis.call('SET', keys[2], f .. q, 'PX', """ + _LIFE_MS + r""")
  redis.call('SET', keys[1], token .. '|' .. f .. '|' .. ttl_ms .. '|' .. holder .. '|' .. q,
    'PX', ttl_ms)
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
-- no live waiter queues (the queue is empty then: the caller deletes the lock key).
local function hand_off(keys)
  local now_us = server_us()
  local head, w = head_waiter(keys, math.floor(now_us / 1000))
  if not head then
    mark(keys[2], false)
    return 0
  end
  redis.call('ZREM', keys[3], head)
  redis.call('HDEL', keys[4], head)
  local waiting = redis.call('EXISTS', keys[3]) == 1
  local holder = table.concat({w[4], w[5], w[6], w[7]}, '|')
  local last = last_fence(redis.call('GET', keys[2]))
  local fence = grant(keys, head, w[3], holder, last, now_us, waiting)
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

# A lock whose fence bookkeeping is missing was never taken, idle for FENCE_IDLE_MS, or
# forgotten by a restart without persistence: then, while the server is younger than
# RESTART_GRACE_S, it is not granted (the old holders are re-checking their leases).
# (Inlined, not a helper: this rare check must not cost the fast path a definition.)
_RESTARTING = (
    "tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)')) < "
    + str(RESTART_GRACE_S)
)

# The uncontended path: no helper is defined before it returns.
_FAST_TAKE = r"""
local token = ARGV[1]
local t = redis.call('TIME')
local now_us = t[1] * 1000000 + t[2]
local f = string.format('%d', now_us)
local last = redis.call('SET', KEYS[2], f, 'GET', 'KEEPTTL')
local c = tonumber(last)
local held
local window = """ + _WINDOW_US + r"""
if c then
  local fence = now_us
  if c >= now_us then
    fence = c + 1
    f = string.format('%d', fence)
    redis.call('SET', KEYS[2], f, 'PX', """ + _LIFE_MS + r""")
  elseif math.floor(now_us / window) ~= math.floor(c / window) then
    redis.call('PEXPIRE', KEYS[2], """ + _LIFE_MS + r""")
  end
  held = redis.call('SET', KEYS[1], token .. '|' .. f .. '|' .. ARGV[2] .. '|' .. ARGV[3] .. '|',
    'NX', 'GET', 'PX', ARGV[2])
  if not held then return fence end
  if string.sub(held, 1, #token + 1) == token .. '|' then
    return {2, tonumber(string.sub(held, #token + 2, string.find(held, '|', #token + 2, true) - 1))}
  end
end
"""


class AcquireReply(IntEnum):
    """What :data:`ACQUIRE` answered when its reply is a list: the list's first element.

    A grant, the common reply, is the bare fence (an integer): cheaper for Redis to build.
    """

    REFUSED = 0  # {0, wait_ms, lock}: not ours; retry after about wait_ms unless woken
    HANDED_OFF = 2  # {2, fence}: already ours: handed off to us, or a retried call


ACQUIRE = Script(
    "lock_acquire",
    r"""-- Acquire a lock, or join its FIFO queue.
-- KEYS: 1 lock, 2 fence bookkeeping (the waiter queue and details: named from the lock's)
-- ARGV: 1 token, 2 ttl_ms, 3 holder 'host|pid|rid|tid',
--       4 queue registration ms (0 or absent = do not queue; a dead waiter drops out
--       after it), 5 wake channel ('' = the waiter's signal list; absent when not queuing)
-- Returns the fence (an integer) when granted now, else {AcquireReply, ...}:
--   {2, fence}          HANDED_OFF: already ours (handed off to us, or a retried call)
--   {0, wait_ms, lock}  REFUSED: not ours: the holder's lock string (false if none: free,
--                       or not granted in a restarted server's grace); retry after about
--                       wait_ms unless woken earlier
"""
    + _FAST_TAKE
    + _HELPERS
    + r"""
-- Here the bookkeeping is missing or marked (its old value is `last`; it now holds the
-- server time, without expiry: settled below), or the lock is another's (`held`).
local keys = all_keys()
local known = c ~= nil
local restarting = false
local function settle(waiting)
  if restarting then
    redis.call('DEL', KEYS[2])  -- stays missing: the grace applies until it ends
    return
  end
  local q = ''
  if waiting then q = 'q' end
  redis.call('SET', KEYS[2], string.format('%d', math.max(c or 0, now_us)) .. q,
    'PX', """ + _LIFE_MS + r""")
end
if not known then
  c = last_fence(last)
  if not c then restarting = """ + _RESTARTING + r""" end
  held = redis.call('GET', KEYS[1])
end
local registration = tonumber(ARGV[4] or '0')
local owner = owner_of(held)
if owner == token then
  settle(redis.call('EXISTS', keys[3]) == 1)
  return {2, fence_of(held, token)}
end
if not owner then
  local head = head_waiter(keys, math.floor(now_us / 1000))
  if ((not head) or head == token) and not restarting then
    if registration > 0 then
      redis.call('ZREM', keys[3], token)
      redis.call('HDEL', keys[4], token)
    end
    local waiting = redis.call('EXISTS', keys[3]) == 1
    return grant(keys, token, ARGV[2], ARGV[3], c, now_us, waiting)
  end
end
if registration > 0 then
  redis.call('ZADD', keys[3], 'NX', now_us, token)
  redis.call('HSET', keys[4], token, table.concat({
    string.format('%d', math.floor(now_us / 1000) + registration), ARGV[5], ARGV[2], ARGV[3]},
    '|'))
  if redis.call('PTTL', keys[3]) < registration then
    redis.call('PEXPIRE', keys[3], registration)
    redis.call('PEXPIRE', keys[4], registration)
  end
  if owner then mark(KEYS[1], true) end
  if known then mark(KEYS[2], true) else settle(true) end
elseif not known then
  settle(redis.call('EXISTS', keys[3]) == 1)
end
local wait_ms = 100
if owner then wait_ms = redis.call('PTTL', KEYS[1]) end
return {0, wait_ms, held or false}
""",
)

RELEASE = Script(
    "lock_release",
    r"""-- Release a lock we own (compare-and-delete) and hand it to the first live waiter.
-- KEYS: 1 lock, 2 fence bookkeeping (the waiter queue and details: named from the lock's)
-- ARGV: 1 token
-- Returns: 1 released, 0 not ours (expired or taken over)
local token = ARGV[1]
local held = redis.call('GET', KEYS[1])
if not held or string.byte(held, #token + 1) ~= 124 or string.sub(held, 1, #token) ~= token then
  return 0
end
if string.byte(held, -1) == 124 then
  redis.call('DEL', KEYS[1])
  return 1
end
"""
    + _HELPERS
    + r"""
if hand_off(all_keys()) == 0 then redis.call('DEL', KEYS[1]) end
return 1
""",
)

CANCEL = Script(
    "lock_cancel",
    r"""-- A waiter gives up (timeout, cancellation): leave the queue; if the lock was
-- handed to us meanwhile, pass it on.
-- KEYS: 1 lock, 2 fence bookkeeping (the waiter queue and details: named from the lock's)
-- ARGV: 1 token
-- Returns: 1 the lock had been handed to us and was passed on, 0 otherwise
"""
    + _HELPERS
    + r"""
local keys = all_keys()
redis.call('ZREM', keys[3], ARGV[1])
redis.call('HDEL', keys[4], ARGV[1])
redis.call('DEL', signal_key(keys, ARGV[1]))
local waiting = redis.call('EXISTS', keys[3]) == 1
if not waiting then mark(KEYS[2], false) end
if owner_of(redis.call('GET', KEYS[1])) ~= ARGV[1] then
  if not waiting then mark(KEYS[1], false) end
  return 0
end
if hand_off(keys) == 0 then redis.call('DEL', KEYS[1]) end
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
