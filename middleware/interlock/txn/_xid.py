"""Global transaction ids: namespaced, self-describing, short enough for every resource.

A global id (``gtrid``) reads ``il:<namespace tag>:<coordinator>:<created ms hex><random>``;
a branch id is ``<gtrid>:<bqual>``. The namespace tag lets recovery touch only the branches
its own deployment started; the creation time lets it judge the age of a prepared branch
on resources that do not record one (MySQL's ``XA RECOVER``). Every gtrid fits MySQL's
64-byte limit; namespaces longer than 24 characters are shortened with a digest.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from dataclasses import dataclass

from interlock.errors import ConfigError

FORMAT_ID = 0x494C  # "IL": the XA formatID of interlock's MySQL branches
PREFIX = "il"
MAX_GTRID = 64  # MySQL: gtrid and bqual are at most 64 bytes each
_COORDINATOR = re.compile(r"^[A-Za-z0-9_-]{1,10}$")
_UNIQUE = re.compile(r"^[0-9a-f]{11}[0-9a-f]{6}$")
_NAMESPACE_TAG_MAX = 24


def namespace_tag(namespace: str) -> str:
    """The form of ``namespace`` carried in transaction ids (deterministic, ≤ 24 chars)."""
    if len(namespace) <= _NAMESPACE_TAG_MAX:
        return namespace
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:10]
    return f"{namespace[:13]}~{digest}"


def validate_coordinator_id(coordinator: str) -> str:
    """Return ``coordinator`` if usable in a transaction id.

    Raises:
        ConfigError: unless it is 1-10 characters from ``A-Z a-z 0-9 _ -``.
    """
    if not isinstance(coordinator, str) or not _COORDINATOR.match(coordinator):
        raise ConfigError(
            f"coordinator_id={coordinator!r} is invalid; use 1-10 characters from A-Z a-z 0-9 _ -"
        )
    return coordinator


def default_coordinator_id() -> str:
    """A short id of this process: host name prefix and pid (for the humans reading ids)."""
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:5] or "host"
    return f"{host}-{os.getpid() % 36**4:x}"[:10]


def new_gtrid(namespace: str, coordinator: str, now: float) -> str:
    """A new global transaction id created at Unix time ``now``."""
    unique = f"{int(now * 1000):011x}{secrets.token_hex(3)}"
    return f"{PREFIX}:{namespace_tag(namespace)}:{coordinator}:{unique}"


def branch_xid(gtrid: str, bqual: str) -> str:
    """The id of one branch (used as PostgreSQL's gid and by custom participants)."""
    return f"{gtrid}:{bqual}"


@dataclass(frozen=True, slots=True)
class XidInfo:
    """What a transaction id says about itself.

    Attributes:
        gtrid: the global id.
        namespace_tag: the (possibly shortened) namespace of the deployment that started it.
        coordinator: the coordinator that started it.
        created: Unix time (seconds) the coordinator started it, by its clock.
    """

    gtrid: str
    namespace_tag: str
    coordinator: str
    created: float


def parse_gtrid(gtrid: str) -> XidInfo | None:
    """Parse a global id; ``None`` if it is not one of interlock's."""
    parts = gtrid.split(":")
    if len(parts) != 4 or parts[0] != PREFIX or not _UNIQUE.match(parts[3]):
        return None
    if not parts[1] or not _COORDINATOR.match(parts[2]):
        return None
    return XidInfo(gtrid, parts[1], parts[2], int(parts[3][:11], 16) / 1000.0)


def namespace_tag_of(gtrid: str) -> str:
    """The namespace tag carried in ``gtrid``; empty if it is not one of interlock's."""
    info = parse_gtrid(gtrid)
    return info.namespace_tag if info is not None else ""


def split_branch(xid: str) -> tuple[str, str] | None:
    """``(gtrid, bqual)`` of a branch id, or ``None`` if it is not one of interlock's."""
    gtrid, sep, bqual = xid.rpartition(":")
    if not sep or not bqual or parse_gtrid(gtrid) is None:
        return None
    return gtrid, bqual


def owned_by(gtrid: str, namespace: str) -> bool:
    """True if ``gtrid`` was started by a coordinator of ``namespace``."""
    info = parse_gtrid(gtrid)
    return info is not None and info.namespace_tag == namespace_tag(namespace)


def gtrid_prefix(namespace: str) -> str:
    """The prefix shared by every gtrid of ``namespace`` (for LIKE queries)."""
    return f"{PREFIX}:{namespace_tag(namespace)}:"
