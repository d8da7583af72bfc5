"""Lua scripts of the distributed cache (one implementation for Redis and ``mem://``).

Keys of one entry share the hash tag ``{name:key}`` (see ``interlock.cache.entry_keys``):

* ``<base>``    the entry: an envelope (``interlock.cache``), PX = fresh + stale lifetime
* ``<base>:l``  the fill lease: ``token generation tag:version ...`` of the one caller
                loading the value (what it loads under), PX = lock_wait
* ``<base>:g``  the write generation, bumped by every delete and explicit write; a load
                started under an older generation is not written back. PX = fill window.

Tag version keys ``<ns>:cache:{name}:tag:<tag>`` share the hash tag ``{name}``; a version
is ``max(previous + 1, server time in µs)``, so versions only grow, also after one expired.
On Redis Cluster they live in another slot than the entries, so the tag keys are never
passed together with entry keys there: the client pipelines ``TAG_VERSIONS`` instead.

Every change publishes ``origin|op|subject`` on the cache's channel: ``k`` (a key was
filled, written or deleted), ``r`` (a fill lease was freed without a value), ``t`` (a tag
was invalidated). Near caches drop what changed; callers waiting for a fill wake up.
"""

from __future__ import annotations

from interlock.backends._script import Script

_BUMP = r"""
local function bump(key, ttl_ms)
  local t = redis.call('TIME')
  local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local version = math.max(tonumber(redis.call('GET', key) or '0') + 1, now_us)
  local text = string.format('%d', version)
  redis.call('SET', key, text, 'PX', ttl_ms)
  return text
end
"""

READ = Script(
    "cache_read",
    r"""-- Read an entry and the current versions of some tags (single node: one round trip).
-- KEYS: 1 entry, 2.. tag version keys
-- ARGV: none
-- Returns: {entry or false, version, ...}  (a missing tag version reads as '0')
local out = {redis.call('GET', KEYS[1])}
for i = 2, #KEYS do out[i] = redis.call('GET', KEYS[i]) or '0' end
return out
""",
)

TAG_VERSIONS = Script(
    "cache_tag_versions",
    r"""-- Current versions of tags (on Redis Cluster, pipelined next to the entry's script).
-- KEYS: tag version keys (one cache: one slot)
-- ARGV: none
-- Returns: {version, ...}  (a missing tag version reads as '0')
local out = {}
for i = 1, #KEYS do out[i] = redis.call('GET', KEYS[i]) or '0' end
return out
""",
)

_LEASE_HELPERS = r"""
-- A lease value is 'token generation tag:version ...' (encoded tags contain no space or ':').
local function parse_lease(value)
  local words = {}
  for word in string.gmatch(value, '%S+') do words[#words + 1] = word end
  local tags = {}
  for i = 3, #words do
    local tag, version = string.match(words[i], '^(.*):(%d+)$')
    if tag then tags[tag] = tonumber(version) end
  end
  return words[1], words[2], tags
end

-- Does the holder load from before a write, a delete or an invalidation of one of its tags?
local function outdated(value, gen, known)
  local _, held_gen, held_tags = parse_lease(value)
  if held_gen ~= gen then return true end
  for word in string.gmatch(known, '%S+') do
    local tag, version = string.match(word, '^(.*):(%d+)$')
    if tag and held_tags[tag] and held_tags[tag] < tonumber(version) then return true end
  end
  return false
end
"""

LEASE = Script(
    "cache_lease",
    r"""-- Before loading: return the entry if a usable one landed, else take the fill lease.
-- A lease taken before a write, delete or tag invalidation the caller knows of is
-- outdated: its load can no longer be written, so the caller takes the lease over.
-- KEYS: 1 entry, 2 lease, 3 generation, 4.. tag version keys (single node only)
-- ARGV: 1 mode ('0' peek: never take the lease, '1' take it if free or outdated),
--       2 token, 3 lease ms,
--       4 header of an entry the caller already rejected (stale, invalidated, corrupt),
--         or '': such an entry counts as absent
--       5 the caller's known tag versions 'tag:version ...' (recorded in the lease)
-- Returns: {state, generation, lease pttl ms, entry or false, entry present (0/1),
--           version, ...}
--   state 1: an entry is there (returned)        2: the lease is ours now
--         3: another caller holds the lease      0: nobody holds it (peek only)
"""
    + _LEASE_HELPERS
    + r"""
local gen = redis.call('GET', KEYS[3]) or '0'
local out
local entry = redis.call('GET', KEYS[1])
if entry and (ARGV[4] == '' or string.sub(entry, 1, #ARGV[4]) ~= ARGV[4]) then
  out = {1, gen, 0, entry, 1}
else
  local present = entry and 1 or 0
  local lease = redis.call('GET', KEYS[2])
  if lease and parse_lease(lease) == ARGV[2] then
    out = {2, gen, 0, false, present}
  elseif ARGV[1] == '1' and ((not lease) or outdated(lease, gen, ARGV[5])) then
    redis.call('SET', KEYS[2], ARGV[2] .. ' ' .. gen .. ' ' .. ARGV[5], 'PX', ARGV[3])
    out = {2, gen, 0, false, present}
  elseif lease then
    out = {3, gen, redis.call('PTTL', KEYS[2]), false, present}
  else
    out = {0, gen, 0, false, present}
  end
end
for i = 4, #KEYS do out[#out + 1] = redis.call('GET', KEYS[i]) or '0' end
return out
""",
)

FILL = Script(
    "cache_fill",
    r"""-- Write a loaded value only if nothing changed since the load began: same generation
-- (no delete or write), no newer version of its tags (no invalidation), same entry
-- (compare-and-set on its header), and our lease not taken over. Free our lease and tell
-- waiters and near caches either way.
-- KEYS: 1 entry, 2 lease, 3 generation, 4.. tag version keys (single node only; on
--       Cluster readers refuse an outdated entry by the versions its envelope records)
-- ARGV: 1 envelope, 2 px, 3 lease token ('' = loaded without the lease),
--       4 generation seen before loading, 5 header of the entry seen before loading
--       ('' = there was none; at most the header's length is compared), 6 channel,
--       7 message, 8 versions of KEYS[4..] read before loading ('version ...')
-- Returns: 1 written, 0 refused (the load is outdated or another value landed first)
local ok = (redis.call('GET', KEYS[3]) or '0') == ARGV[4]
local known = {}
for word in string.gmatch(ARGV[8] or '', '%S+') do known[#known + 1] = tonumber(word) end
for i = 4, #KEYS do
  local now = tonumber(redis.call('GET', KEYS[i]) or '0')
  if now > (known[i - 3] or 0) then ok = false end
end
local lease = redis.call('GET', KEYS[2])
local holder = lease and string.match(lease, '^(%S+)')
if ARGV[3] ~= '' and holder and holder ~= ARGV[3] then ok = false end
if ok and ARGV[5] == '' then
  ok = redis.call('EXISTS', KEYS[1]) == 0
elseif ok then
  ok = redis.call('GETRANGE', KEYS[1], 0, #ARGV[5] - 1) == ARGV[5]
end
if ok then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if ARGV[3] ~= '' and holder == ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[6], ARGV[7])
if ok then return 1 end
return 0
""",
)

RELEASE = Script(
    "cache_release",
    r"""-- Free a fill lease without a value (the loader failed) and wake the waiters.
-- KEYS: 1 lease
-- ARGV: 1 token, 2 channel, 3 message
-- Returns: 1 freed, 0 not ours (expired or taken over)
local lease = redis.call('GET', KEYS[1])
if not lease or string.match(lease, '^(%S+)') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
""",
)

WRITE = Script(
    "cache_write",
    r"""-- An explicit write (set): store the entry and bump the generation, so loads that began
-- before it are not written back over it.
-- KEYS: 1 entry, 2 generation
-- ARGV: 1 envelope, 2 px, 3 generation ttl ms, 4 channel, 5 message
-- Returns: 1
"""
    + _BUMP
    + r"""
bump(KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
""",
)

DELETE = Script(
    "cache_delete",
    r"""-- Delete an entry and bump the generation, so loads in flight are not written back.
-- KEYS: 1 entry, 2 generation
-- ARGV: 1 generation ttl ms, 2 channel, 3 message
-- Returns: 1 an entry was deleted, 0 there was none
"""
    + _BUMP
    + r"""
local deleted = redis.call('DEL', KEYS[1])
bump(KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return deleted
""",
)

INVALIDATE_TAG = Script(
    "cache_invalidate_tag",
    r"""-- Invalidate every entry carrying a tag, in O(1): raise the tag's version.
-- KEYS: 1 tag version key
-- ARGV: 1 retention ms (longer than any entry of the cache can live), 2 channel, 3 message
-- Returns: the new version (decimal string)
"""
    + _BUMP
    + r"""
local version = bump(KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return version
""",
)
