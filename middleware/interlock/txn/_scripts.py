"""Lua scripts of two-phase commit: the Redis decision log and the Redis participant.

Decision log (one hash tag per namespace, ``<ns>:txn:{log}``):

* ``<log>:d`` hash gtrid -> encoded :class:`~interlock.txn.Decision` (JSON, opaque here)
* ``<log>:t`` sorted set gtrid -> creation time (ms), oldest first

Redis participant, per store (hash tag ``{store}``, so a store's keys share a slot):

* ``<store>:v:<key>`` the committed values (strings)
* ``<store>:g`` hash value key -> branch xid guarding it while prepared
* ``<store>:p`` sorted set branch xid -> creation time (ms): the prepared branches
* ``<store>:s:<branch xid>`` list of staged ``op, key, arg`` triples (op: set, del, incr,
  guard), written by prepare and applied by commit
* ``<store>:o:<branch xid>`` the branch's outcome (``c`` or ``a``), kept for a day so that a
  repeated commit/abort and heuristic checks get a definite answer
"""

from __future__ import annotations

from interlock.backends._script import Script

LOG_DECIDE = Script(
    "txn_log_decide",
    r"""-- Record a decision unless one is already recorded (the first decision wins), and
-- remove the decisions of transactions completed since the last call (same round trip).
-- KEYS: 1 decisions hash, 2 creation index
-- ARGV: 1 gtrid, 2 encoded decision, 3 creation time ms, 4.. gtrids to forget
-- Returns: {1, record} recorded; {0, existing record} a decision was already there
for i = 4, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {0, existing} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {1, ARGV[2]}
""",
)

LOG_FORGET = Script(
    "txn_log_forget",
    r"""-- Remove decisions whose every branch is resolved.
-- KEYS: 1 decisions hash, 2 creation index
-- ARGV: gtrids
-- Returns: the number of decisions removed
local removed = 0
for i = 1, #ARGV do
  removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
return removed
""",
)

# Validation shared by prepare (stage) and one-phase commit (apply now).
_STORE_VALIDATE = r"""
-- Check the operations against the committed values and the guards of other branches.
-- Returns nil and the staged triples and touched keys, or the refusal reply.
local function validate(KEYS, ARGV)
  local xid = ARGV[1]
  local n = tonumber(ARGV[3])
  local values, staged, touched = {}, {}, {}
  for i = 1, n do
    local key = KEYS[4 + i]
    local at = 3 + (i - 1) * 4
    local op, arg, low, high = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
    local guard = redis.call('HGET', KEYS[2], key)
    if guard and guard ~= xid then return {0, i, 'conflict'} end
    local current = values[key]
    if current == nil then current = redis.call('GET', key) end
    if op == 'set' then
      current = arg
    elseif op == 'del' then
      current = false
    elseif op == 'incr' then
      local number = tonumber(current or '0')
      if not number or number ~= math.floor(number) then return {0, i, 'type'} end
      number = number + tonumber(arg)
      if low ~= '' and number < tonumber(low) then return {0, i, 'below'} end
      if high ~= '' and number > tonumber(high) then return {0, i, 'above'} end
      current = string.format('%d', number)
    elseif op == 'expect' then
      if current ~= arg then return {0, i, 'mismatch'} end
    elseif op == 'absent' then
      if current then return {0, i, 'mismatch'} end
    else
      return redis.error_reply('unknown staged operation ' .. op)
    end
    values[key] = current
    if op == 'set' or op == 'del' or op == 'incr' then
      staged[#staged + 1] = op
      staged[#staged + 1] = key
      staged[#staged + 1] = arg
    end
    touched[key] = true
  end
  return nil, staged, touched
end
"""

_STORE_ARGS = r"""-- KEYS: 1 stage list, 2 guards hash, 3 prepared index, 4 outcome marker,
--       4+i the value key of operation i
-- ARGV: 1 branch xid, 2 creation time ms, 3 operation count n,
--       then per operation: op (set, del, incr, expect, absent), arg, min, max
--       (min/max: integer bounds of incr, '' for none)
"""

_REFUSALS = r"""--          {0, i, reason} refused at operation i:
--          'conflict' (guarded by another branch),
--          'below' / 'above' (an incr bound), 'mismatch' (expect/absent),
--          'type' (not an integer)
"""

STORE_PREPARE = Script(
    "txn_store_prepare",
    "-- Reserve: validate the staged operations, stage them and guard every touched key.\n"
    + _STORE_ARGS
    + "-- Returns: {1} prepared; {2} already prepared (a retried call);\n"
    + "--          {3, outcome} already finished ('c' committed, 'a' aborted);\n"
    + _REFUSALS
    + _STORE_VALIDATE
    + r"""
local xid = ARGV[1]
local done = redis.call('GET', KEYS[4])
if done then return {3, done} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {2} end
local refused, staged, touched = validate(KEYS, ARGV)
if refused then return refused end
for key, _ in pairs(touched) do
  redis.call('HSET', KEYS[2], key, xid)
  staged[#staged + 1] = 'guard'
  staged[#staged + 1] = key
  staged[#staged + 1] = ''
end
if #staged > 0 then redis.call('RPUSH', KEYS[1], unpack(staged)) end
redis.call('ZADD', KEYS[3], ARGV[2], xid)
return {1}
""",
)

STORE_APPLY = Script(
    "txn_store_apply",
    "-- One-phase commit of a transaction's only branch: validate and apply at once.\n"
    + _STORE_ARGS
    + "-- Returns: {1} applied;\n"
    + _REFUSALS
    + _STORE_VALIDATE
    + r"""
local refused, staged = validate(KEYS, ARGV)
if refused then return refused end
for i = 1, #staged, 3 do
  local op, key, arg = staged[i], staged[i + 1], staged[i + 2]
  if op == 'set' then redis.call('SET', key, arg)
  elseif op == 'del' then redis.call('DEL', key)
  elseif op == 'incr' then redis.call('INCRBY', key, arg) end
end
return {1}
""",
)

STORE_FINISH = Script(
    "txn_store_finish",
    r"""-- Confirm (apply the staged operations) or cancel (discard them); release the guards.
-- KEYS: 1 stage list, 2 guards hash, 3 prepared index, 4 outcome marker
-- ARGV: 1 branch xid, 2 'c' to commit or 'a' to abort, 3 outcome marker ttl ms
-- Returns: {1} done now; {0, outcome} not prepared: already finished with outcome
--          ('c'/'a'), or false when the branch is unknown (never prepared, or lost).
--          Aborting an unknown branch records 'a', so a prepare still in flight is refused.
local xid = ARGV[1]
if redis.call('ZSCORE', KEYS[3], xid) == false then
  local done = redis.call('GET', KEYS[4])
  if not done and ARGV[2] == 'a' then redis.call('SET', KEYS[4], 'a', 'PX', ARGV[3]) end
  return {0, done}
end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for i = 1, #items, 3 do
  local op, key, arg = items[i], items[i + 1], items[i + 2]
  if ARGV[2] == 'c' then
    if op == 'set' then redis.call('SET', key, arg)
    elseif op == 'del' then redis.call('DEL', key)
    elseif op == 'incr' then redis.call('INCRBY', key, arg) end
  end
  if op == 'guard' and redis.call('HGET', KEYS[2], key) == xid then
    redis.call('HDEL', KEYS[2], key)
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], xid)
redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
return {1}
""",
)
