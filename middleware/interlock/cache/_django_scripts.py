"""Lua scripts of the Django cache backend (``interlock.django.InterlockCache``).

They work on the keys and envelopes of ``interlock.cache._scripts`` (an entry, its write
generation ``<entry>:g``) and never parse an envelope: the client judges what it read and
names the exact bytes (or header) it saw, and the script writes only if that is still
what is stored (compare-and-set). Every write bumps the generation, so a ``get_or_set``
load that began before it is not written back over it, and publishes ``origin|k|key`` so
near caches drop the key.

``px`` arguments: ``'0'`` = no expiry (Django's ``timeout=None``), ``'keep'`` = keep the
key's remaining lifetime, otherwise milliseconds.
"""

from __future__ import annotations

from interlock.backends._script import Script
from interlock.cache._scripts import _BUMP

_SET_PX = r"""
local function set_entry(key, value, px)
  if px == 'keep' then
    redis.call('SET', key, value, 'KEEPTTL')
  elseif px == '0' then
    redis.call('SET', key, value)
  else
    redis.call('SET', key, value, 'PX', px)
  end
end
"""

SET = Script(
    "django_set",
    r"""-- set(): store an entry (optionally without expiry), bump the generation, announce it.
-- KEYS: 1 entry, 2 generation
-- ARGV: 1 envelope, 2 px ('0' = no expiry), 3 generation ttl ms, 4 channel, 5 message
-- Returns: 1
"""
    + _BUMP
    + _SET_PX
    + r"""
set_entry(KEYS[1], ARGV[1], ARGV[2])
bump(KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
""",
)

ADD = Script(
    "django_add",
    r"""-- add(): store an entry unless a usable one is there.
-- The client cannot know in advance whether a stored entry is still fresh (freshness is
-- in the envelope), so it first calls with ARGV[3] = '' (only a missing key counts as
-- absent); when it finds the returned entry expired, it calls again naming its header.
-- KEYS: 1 entry, 2 generation
-- ARGV: 1 envelope, 2 px ('0' = no expiry), 3 header of an entry the caller judged
--       expired ('' = none), 4 generation ttl ms, 5 channel, 6 message
-- Returns: {1, false} written
--          {0, entry}  not written: this entry is stored (the client judges it)
"""
    + _BUMP
    + _SET_PX
    + r"""
local current = redis.call('GET', KEYS[1])
if current and (ARGV[3] == '' or string.sub(current, 1, #ARGV[3]) ~= ARGV[3]) then
  return {0, current}
end
set_entry(KEYS[1], ARGV[1], ARGV[2])
bump(KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {1, false}
""",
)

REPLACE = Script(
    "django_replace",
    r"""-- incr()/decr()/touch(): replace an entry only if it is still the one the client read.
-- KEYS: 1 entry, 2 generation
-- ARGV: 1 the entry as read (all of it), 2 the new envelope,
--       3 px ('keep' = keep the remaining lifetime, '0' = no expiry, else ms),
--       4 generation ttl ms, 5 channel, 6 message
-- Returns: 1 replaced, 0 the entry changed or vanished meanwhile (read again)
"""
    + _BUMP
    + _SET_PX
    + r"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
set_entry(KEYS[1], ARGV[2], ARGV[3])
bump(KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
""",
)
