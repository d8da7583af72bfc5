"""``interlock check``: is the backend fit for locks, cache and transactions?

Registered into the ``interlock`` command by :func:`register`::

    interlock check [--url URL] [--namespace NS] [--timeout SECONDS] [--json]

Prints one line per check, ``ok|warn|fail  <check>: <detail>``, and under a warning or a
failure an indented line naming the fix (``--json``: a list of ``{check, status, detail,
fix}``). Exit status 0 when nothing failed (warnings allowed), 1 when a check failed, 2 for
an invalid URL or option. This module gathers; :mod:`interlock.cli._check_report` judges
and prints. The checks are explained in docs/check.md.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from interlock.backends import parse_redis_url, parse_sentinel_url
from interlock.cli import _check_report as report
from interlock.cli._check_report import CONFIG_FIX, Result, Verdict, fail, ok, warn
from interlock.errors import BackendError, BackendUnavailable, ConfigError, InterlockError

if TYPE_CHECKING:
    from interlock._sync.client import Interlock

PROBE_LOCK = "interlock-check"
_PINGS = 20
_WAKE_TIMEOUT = 2.0


def register(subparsers: Any) -> None:
    """Add the ``check`` command to the ``interlock`` command's subparsers."""
    check = subparsers.add_parser(
        "check",
        help="is the backend fit for locks, cache and transactions?",
        description="Check that the backend is reachable and configured for interlock: "
        "round trip, server version, a probe lock, pub/sub wake-ups, eviction policy, "
        "durability of 2PC decisions and the Cluster/Sentinel topology.",
    )
    check.add_argument("--url", default=None, help="backend URL (INTERLOCK_URL; mem:// default)")
    check.add_argument("--namespace", default=None, help="namespace (INTERLOCK_NAMESPACE)")
    check.add_argument(
        "--timeout",
        default=None,
        metavar="SECONDS",
        help="connect and command timeout (INTERLOCK_CONNECT_TIMEOUT, INTERLOCK_SOCKET_TIMEOUT; 1)",
    )
    check.add_argument("--json", action="store_true", help="print a JSON list")
    check.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run every check, print the report and return the exit status."""
    from interlock._sync.client import Interlock

    try:
        il = Interlock(
            args.url,
            namespace=args.namespace,
            registry=None,
            connect_timeout=args.timeout,
            socket_timeout=args.timeout,
        )
    except ConfigError as exc:
        fix = "correct --url / --namespace / --timeout or the INTERLOCK_* variable named above"
        print(report.render([Result("config", *fail(str(exc), fix))], args.json))
        return 2
    results = [Result("config", *ok(f"{_target(il)}, namespace {il.namespace!r}"))]
    try:
        for name, check in _CHECKS:
            try:
                verdict = check(il)
            except Exception as exc:  # the report goes on; foreign errors say their type
                text = (
                    str(exc) if isinstance(exc, InterlockError) else f"{type(exc).__name__}: {exc}"
                )
                if isinstance(exc, BackendUnavailable) or (
                    name == "reachable" and not isinstance(exc, BackendError)
                ):
                    results.append(Result(name, *fail(text, _unreachable_fix(il))))
                    break  # every later check needs the backend
                if name == "reachable":  # the server answered, with an error
                    results.append(Result(name, *fail(text, answered_fix(il))))
                    break
                results.append(Result(name, *fail(text, _FIXES[name])))
            else:
                results.append(Result(name, *verdict))
    finally:
        il.close()
    print(report.render(results, args.json))
    return 1 if any(result.status == "fail" for result in results) else 0


def _embedded(il: Interlock) -> bool:
    return il.settings.scheme == "mem"


def _nodes(il: Interlock) -> tuple[tuple[str, int], ...]:
    if "sentinel" in il.settings.scheme:
        return parse_sentinel_url(il.settings.url).sentinels
    return parse_redis_url(il.settings.url).nodes


def _where(il: Interlock) -> str:
    """The URL's host:port list, without credentials."""
    return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in _nodes(il))


def _target(il: Interlock) -> str:
    """What the settings point at: nodes, Sentinel service and db, without credentials."""
    scheme = il.settings.scheme
    if scheme == "mem":
        return "mem:// (embedded)"
    if "sentinel" in scheme:
        target = parse_sentinel_url(il.settings.url)
        return f"{scheme}://{_where(il)}, service {target.service!r}, db {target.db}"
    if "cluster" in scheme:
        return f"{scheme}://{_where(il)}, db 0 (a cluster has only db 0)"
    return f"{scheme}://{_where(il)}, db {parse_redis_url(il.settings.url).db}"


def _db(il: Interlock) -> int:
    if "sentinel" in il.settings.scheme:
        return parse_sentinel_url(il.settings.url).db
    return 0 if "cluster" in il.settings.scheme else parse_redis_url(il.settings.url).db


def _unreachable_fix(il: Interlock) -> str:
    if "sentinel" in il.settings.scheme:
        service = parse_sentinel_url(il.settings.url).service
        return (
            f"are the sentinels running at {_where(il)}, monitoring {service!r} with a "
            "reachable master? check the URL (sentinel_password= for sentinels with "
            "requirepass, sentinel_ssl=) / firewall / TLS"
        )
    return f"is redis-server running at {_where(il)}? check the URL / firewall / TLS"


def answered_fix(il: Interlock) -> str:
    """The fix when the server answers the first command with an error (not unreachable).

    With a db other than 0 that is nearly always ``SELECT`` refusing a database the server
    does not have; the server's ``databases`` setting is read over a db-0 connection.
    """
    db = _db(il)
    if db == 0:
        return "the server refused PING: check the ACL of this user (+ping) and the server log"
    count = _databases(il)
    have = (
        f"the server has {count} (db 0-{count - 1})"
        if count
        else "redis.conf `databases` sets how many there are (16 by default: db 0-15)"
    )
    return (
        f"the URL selects db {db}: {have}; use a db below that in the URL path (e.g. /0), "
        "raise `databases` in redis.conf, or allow SELECT for this ACL user (+select)"
    )


def _databases(il: Interlock) -> int | None:
    """The server's ``databases`` setting, over a db-0 connection; ``None`` if unknown."""
    if il.settings.scheme not in ("redis", "rediss"):
        return None  # Sentinel: the master's address is the sentinels' to tell
    import redis

    node = {**parse_redis_url(il.settings.url).node_options(), "db": 0}
    client = redis.Redis(
        **node,
        socket_timeout=il.settings.socket_timeout,
        socket_connect_timeout=il.settings.connect_timeout,
    )
    try:
        return int(report.config_value(client.config_get("databases"))) or None
    except (redis.RedisError, OSError, ValueError):
        return None
    finally:
        client.close()


def _reachable(il: Interlock) -> Verdict:
    if _embedded(il):
        return ok("embedded (mem://): in this process, no network")
    rounds = []
    for _ in range(_PINGS):
        started = time.perf_counter()
        il.backend.execute("PING")
        rounds.append((time.perf_counter() - started) * 1000)
    return ok(f"PING round trip {statistics.median(rounds):.2f} ms (median of {_PINGS})")


def _info(il: Interlock) -> dict[str, Any]:
    reply = il.backend.execute("INFO", "server")
    return dict(reply) if isinstance(reply, dict) else {}


def _version(il: Interlock) -> Verdict:
    if _embedded(il):
        return ok("embedded (mem://): runs the same Lua scripts in process")
    return report.version(str(_info(il).get("redis_version", "unknown")))


def _locks(il: Interlock) -> Verdict:
    key = uuid.uuid4().hex
    started = time.perf_counter()
    with il.lock(PROBE_LOCK, key, ttl=5.0, timeout=2.0) as lease:
        acquired_ms = (time.perf_counter() - started) * 1000
        holder = il.lock_info(PROBE_LOCK, key)
    if lease.fence <= 0:
        return fail(f"the probe lock got fence {lease.fence}; fences are positive", _FIXES["locks"])
    if holder is None or holder.fence != lease.fence:
        return fail(f"lock_info did not show the probe lock's holder: {holder!r}", _FIXES["locks"])
    if il.lock_info(PROBE_LOCK, key) is not None:
        return fail("the probe lock was still held after its release", _FIXES["locks"])
    return ok(f"probe lock acquired in {acquired_ms:.2f} ms, fence {lease.fence}, holder seen")


def _wake_ups(il: Interlock) -> Verdict:
    channel = f"{il.namespace}:check:{uuid.uuid4().hex}"
    received = threading.Event()

    def on_message(payload: bytes) -> None:
        received.set()

    il.backend.subscribe(channel, on_message)
    try:
        started = time.perf_counter()
        il.backend.execute("PUBLISH", channel, b"check")
        arrived = received.wait(_WAKE_TIMEOUT)
        elapsed_ms = (time.perf_counter() - started) * 1000
    finally:
        il.backend.unsubscribe(channel, on_message)
    if not arrived:
        detail = f"a published message did not arrive within {_WAKE_TIMEOUT:g} s"
        return fail(detail, _FIXES["wake-ups"])
    return ok(f"pub/sub round trip in {elapsed_ms:.2f} ms")


def _config(il: Interlock, name: str) -> str:
    return report.config_value(il.backend.execute("CONFIG", "GET", name))


def _eviction(il: Interlock) -> Verdict:
    if _embedded(il):
        return ok("embedded (mem://): nothing is evicted")
    try:
        maxmemory, policy = int(_config(il, "maxmemory") or 0), _config(il, "maxmemory-policy")
    except BackendError as exc:
        return warn(f"could not read maxmemory / maxmemory-policy ({exc})", CONFIG_FIX)
    return report.eviction(maxmemory, policy)


def _durability(il: Interlock) -> Verdict:
    if _embedded(il):
        return ok("embedded (mem://): 2PC decisions live in this process's memory")
    try:
        appendonly, appendfsync = _config(il, "appendonly"), _config(il, "appendfsync")
    except BackendError as exc:
        return warn(f"could not read appendonly / appendfsync ({exc})", CONFIG_FIX)
    return report.durability(appendonly, appendfsync)


def _topology(il: Interlock) -> Verdict:
    if _embedded(il):
        return ok("embedded (mem://): one process only; use Redis to coordinate processes")
    if "cluster" in il.settings.scheme:
        node = _where(il).split(",")[0]
        return report.cluster(il.backend.execute("CLUSTER", "INFO"), node)
    if "sentinel" in il.settings.scheme:
        return _sentinel(il)
    if _info(il).get("redis_mode") == "cluster":
        return fail(f"{_where(il)} is a Redis Cluster node", "use a redis+cluster:// URL")
    return ok(f"single node at {_where(il)}")


def _sentinel(il: Interlock) -> Verdict:
    import redis

    target = parse_sentinel_url(il.settings.url)
    errors = []
    refused = False
    for host, port in target.sentinels:
        client = redis.Redis(
            host=host,
            port=port,
            socket_timeout=il.settings.socket_timeout,
            socket_connect_timeout=il.settings.connect_timeout,
            **target.sentinel_options(),  # the sentinels' own credentials and TLS
        )
        try:
            master: Any = client.sentinel_master(target.service, return_responses=True)
        except (redis.RedisError, OSError) as exc:
            refused = refused or isinstance(exc, redis.AuthenticationError)
            errors.append(f"{host}:{port}: {exc}")
            continue
        finally:
            client.close()
        return report.sentinel(master, target.service, f"{host}:{port}")
    fix = _SENTINEL_LOGIN_FIX if refused else _unreachable_fix(il)
    return fail("no sentinel answered: " + "; ".join(errors), fix)


_CHECKS: tuple[tuple[str, Callable[[Interlock], Verdict]], ...] = (
    ("reachable", _reachable),
    ("version", _version),
    ("locks", _locks),
    ("wake-ups", _wake_ups),
    ("eviction", _eviction),
    ("durability", _durability),
    ("topology", _topology),
)
_SENTINEL_LOGIN_FIX = (
    "put the sentinels' password (sentinel.conf requirepass) in the URL as "
    "?sentinel_password=... (and sentinel_username=... for an ACL user); user:password@ is "
    "for the master only"
)
_FIXES = {  # when a check raised an error other than BackendUnavailable
    "version": "allow INFO for this user (ACL: +info), or check the server version by hand",
    "locks": "the lock scripts need EVAL/EVALSHA, GET/SET/DEL and TIME on the lock keys; "
    "check the ACL (a read-only replica cannot hold locks)",
    "wake-ups": "lock waiters and near-cache invalidation need SUBSCRIBE/PUBLISH between "
    "clients; check the ACL (&* channels) and that no proxy drops pub/sub",
    "eviction": CONFIG_FIX,
    "durability": CONFIG_FIX,
    "topology": "check the cluster / sentinel configuration with redis-cli",
}
