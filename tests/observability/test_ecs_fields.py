"""Every field interlock can write is an ECS 8.11 field of the right type, or one of its own
``interlock.*`` fields, and every one is documented in docs/logging.md.

The ECS side is ``data/ecs_8.11.0_subset.txt`` (names, types and allowed values, from the
ECS 8.11.0 field reference). The fields the package can write are found in its source —
``extra={...}`` and dict literals with dotted keys, ``_context.record(section, **fields)``
(``interlock.<section>.<field>``), the transaction ``event(..., **fields)`` helper
(``interlock.txn.<field>``) — and checked again on real lines.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

from interlock import AsyncInterlock, InterlockMiddleware, LockRule, request_context
from interlock.logs._formatter import ECS_VERSION
from interlock.testing import LogCapture, asgi_request

from ._support import LOG_FIELDS, LOGGING_DOC, ROOT

PACKAGE = ROOT / "middleware" / "interlock"
ECS_FILE = Path(__file__).parent / "data" / f"ecs_{ECS_VERSION}_subset.txt"
_DOTTED = re.compile(r"^@timestamp$|^[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)+$")
# dotted string keys in the package that are not log fields
NOT_LOG_FIELDS = ("wsgi.", "uvicorn.", "gunicorn.")  # WSGI environ keys, logger names
# JSON types an ECS type takes in a line (``str`` for every string-like type)
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "keyword": (str,), "match_only_text": (str,), "wildcard": (str,), "date": (str,),
    "ip": (str,), "long": (int,), "float": (int, float), "boolean": (bool,),
}  # fmt: skip
_DOC_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}


def _ecs() -> tuple[dict[str, str], dict[str, set[str]], dict[str, set[str]]]:
    fields: dict[str, str] = {}
    allowed: dict[str, set[str]] = {}
    expected: dict[str, set[str]] = {}
    for line in ECS_FILE.read_text(encoding="utf-8").splitlines():
        kind, *rest = line.split() or ["#"]
        if kind == "field":
            fields[rest[0]] = rest[1]
        elif kind == "allowed":
            allowed[rest[0]] = set(rest[1:])
        elif kind == "expected":
            expected[rest[0]] = set(rest[1:])
    return fields, allowed, expected


ECS_FIELDS, ECS_ALLOWED, ECS_EXPECTED_TYPES = _ecs()


def _keys(node: ast.expr) -> list[str]:
    """Constant keys of a dict literal, or of ``{k: ... for k in ("a", "b")}``."""
    if isinstance(node, ast.Dict):
        keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        return [k for k in keys if isinstance(k, str)]
    if isinstance(node, ast.DictComp) and isinstance(node.generators[0].iter, ast.Tuple):
        return [e.value for e in node.generators[0].iter.elts if isinstance(e, ast.Constant)]
    return []


def written_fields() -> dict[str, set[str]]:
    """Every log field the package's source can write, with the modules writing it."""
    found: dict[str, set[str]] = {}

    def add(name: str, where: str) -> None:
        if not name.startswith(NOT_LOG_FIELDS):
            found.setdefault(name, set()).add(where)

    for path in sorted(PACKAGE.rglob("*.py")):
        if "_sync" in path.parts:  # generated from _async
            continue
        where = str(path.relative_to(PACKAGE))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        spans = _span_attribute_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in spans:
                continue
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                section = None
                if name == "record":  # _context.record("lock", ...) / _http_txn.record(ex, ...)
                    first = node.args[0] if node.args else None
                    section = first.value if isinstance(first, ast.Constant) else "txn"
                elif name == "event" and where.startswith(("_async/txn", "txn/")):
                    section = "txn"  # interlock.txn._events.event(level, action, msg, **fields)
                for kw in node.keywords:
                    if section is not None and kw.arg:
                        prefix = f"interlock.{section}.{kw.arg}"
                        nested = _keys(kw.value)
                        for key in nested or [""]:
                            add(f"{prefix}.{key}" if key else prefix, where)
            if isinstance(node, ast.Dict | ast.DictComp):
                for key in _keys(node):
                    if _DOTTED.match(key):
                        add(key, where)
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
                key = node.slice
                text = key.value if isinstance(key, ast.Constant) else None
                if isinstance(text, str) and _DOTTED.match(text):
                    add(text, where)
    return found


def _span_attribute_nodes(tree: ast.AST) -> set[int]:
    """The dict literals that are span attributes (docs/tracing.md), not log fields: in
    functions named ``*_attributes`` / ``*_span``, and arguments of ``tracer.span(...)``,
    ``tracer.start(...)`` and ``span.update/event/link(...)``."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.endswith(
            ("_attributes", "_span")
        ):
            skipped.update(id(n) for n in ast.walk(node))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, receiver = node.func.attr, ast.unparse(node.func.value)
            if (method in ("span", "start") and receiver.endswith("tracer")) or (
                method in ("update", "event", "link") and receiver.endswith("span")
            ):
                for arg in node.args:
                    skipped.update(id(n) for n in ast.walk(arg))
    return skipped


def documented_types() -> dict[str, str]:
    """``field -> type`` from the rows of docs/logging.md's tables naming one field and type."""
    types: dict[str, str] = {}
    columns: dict[str, int] | None = None
    for line in LOGGING_DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            columns = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if columns is None:
            columns = {c.lower(): i for i, c in enumerate(cells)}
            continue
        if "field" not in columns or "type" not in columns or set(line) <= set("|-: "):
            continue
        names = re.findall(r"`([^`]+)`", cells[columns["field"]])
        if len(names) == 1 and cells[columns["type"]] in _DOC_TYPES:
            types[names[0]] = cells[columns["type"]]
    return types


def _check_field(name: str) -> str | None:
    """Why ``name`` may not be written, or ``None``."""
    if name.startswith("interlock."):
        return None if name in LOG_FIELDS else "an interlock.* field missing from docs/logging.md"
    if name.startswith("labels."):
        return None
    if name not in ECS_FIELDS:
        return f"not an ECS {ECS_VERSION} field: put it under interlock.* (and document it)"
    if name not in LOG_FIELDS:
        return "an ECS field missing from docs/logging.md"
    return None


# -- the source ----------------------------------------------------------------------------


def test_the_scan_finds_the_fields_it_should() -> None:
    found = written_fields()
    for name in (
        "@timestamp", "event.type", "interlock.http.route", "interlock.txn.state",
        "interlock.lock.holder.request_id", "interlock.txn.cause", "interlock.cache.result",
    ):  # fmt: skip
        assert name in found, name
    assert "http.route" not in found


def test_every_field_the_package_can_write_is_ecs_or_its_own_and_documented() -> None:
    problems = {
        name: f"{why} (written in {', '.join(sorted(where))})"
        for name, where in written_fields().items()
        if (why := _check_field(name)) is not None
    }
    assert not problems, "\n".join(f"{k}: {v}" for k, v in sorted(problems.items()))


def test_documented_ecs_fields_have_their_ecs_type() -> None:
    ecs_of_doc = {
        "string": {"keyword", "match_only_text", "wildcard", "date", "ip"},
        "integer": {"long"},
        "number": {"long", "float"},
        "boolean": {"boolean"},
    }
    documented = documented_types()
    assert "event.type" in documented and "interlock.http.route" in documented
    wrong = {
        name: f"documented {kind}, ECS {ECS_FIELDS[name]}"
        for name, kind in documented.items()
        if name in ECS_FIELDS and ECS_FIELDS[name] not in ecs_of_doc[kind]
    }
    assert not wrong, wrong
    undocumented_ecs = {
        name for name in LOG_FIELDS if not name.startswith(("interlock.", "labels."))
    } - set(ECS_FIELDS)
    assert not undocumented_ecs, f"docs/logging.md names non-ECS fields: {undocumented_ecs}"


# -- real lines ----------------------------------------------------------------------------


def _check_line(line: dict[str, Any]) -> list[str]:
    documented = documented_types()
    problems = []
    for name, value in line.items():
        why = _check_field(name)
        if why is not None:
            problems.append(f"{name}: {why}")
        elif name in ECS_FIELDS and not all(  # any ECS field may hold an array of values
            isinstance(v, _JSON_TYPES[ECS_FIELDS[name]])
            for v in (value if isinstance(value, list) else [value])
        ):
            problems.append(f"{name}: {value!r} is not an ECS {ECS_FIELDS[name]}")
        elif name.startswith("labels.") and not isinstance(value, str):
            problems.append(f"{name}: {value!r}: labels are keywords (strings)")
        elif name in documented and not all(
            isinstance(v, _DOC_TYPES[documented[name]])
            for v in (value if isinstance(value, list) else [value])
        ):
            problems.append(f"{name}: {value!r} is not the documented {documented[name]}")
    for name, values in ECS_ALLOWED.items():
        if name in line and line[name] not in values:
            problems.append(f"{name}: {line[name]!r} is not an allowed value")
    for spec, types in ECS_EXPECTED_TYPES.items():
        field, _, category = spec.partition("=")
        if line.get(field) == category and line.get("event.type") not in types:
            problems.append(f"event.type {line.get('event.type')!r} with {spec}: not in {types}")
    return problems


class _Request:  # what Django passes as extra={"request": ...}
    def __repr__(self) -> str:
        return "<WSGIRequest: GET '/a?token=secret'>"


async def _lines() -> list[dict[str, Any]]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        if scope["path"] == "/slow/1":
            await asyncio.sleep(0.5)
        logging.getLogger("django.request").warning(
            "Not Found: %s", scope["path"], extra={"status_code": 404, "request": _Request()}
        )
        logging.getLogger("app").info("where", stack_info=True, extra={"tags": ["a"]})
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})

    ail = AsyncInterlock("mem://", registry=None)
    rule = LockRule("/slow/{n}", name="slow", key="{n}", timeout=0.05)
    wrapped = InterlockMiddleware(app, interlock=ail, locks=[rule])
    capture = LogCapture()
    root = logging.getLogger()
    root.addHandler(capture)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        agent = [(b"user-agent", b"t")]
        await asgi_request(wrapped, "GET", "/a", query=b"token=x&q=1", headers=agent)
        with pytest.raises(RuntimeError):
            await asgi_request(wrapped, "GET", "/boom")
        held = asyncio.create_task(asgi_request(wrapped, "GET", "/slow/1"))
        deadline = time.monotonic() + 10
        while await ail.lock_info("slow", "1") is None:  # the first request holds the lock
            assert time.monotonic() < deadline, "the first request did not take the lock"
            await asyncio.sleep(0.005)
        assert (await asgi_request(wrapped, "GET", "/slow/1")).status == 423
        await held
        async with ail.transaction("order") as tx:  # noqa: F841 - its events are the point
            pass
        with request_context("rid", "a" * 32, "b" * 16):
            logging.getLogger("app").error("failed", exc_info=ValueError("x"))
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
        await ail.aclose()
    return capture.records


@pytest.mark.anyio
async def test_real_lines_are_pure_ecs() -> None:
    lines = await _lines()

    problems = {p for line in lines for p in _check_line(line)}
    assert not problems, "\n".join(sorted(problems))
    requests = [line for line in lines if line["log.logger"] == "interlock.http"]
    assert {line["event.type"] for line in requests} == {"access", "error"}
    assert {line["interlock.http.route"] for line in requests} >= {"/slow/{n}"}
    django = next(line for line in lines if line["log.logger"] == "django.request")
    assert django["labels.status_code"] == "404"  # a foreign extra: a label, as a string
    assert not any("request" in key or "WSGIRequest" in str(v) for key, v in django.items()
                   if key != "http.request.id")  # fmt: skip
    app_line = next(line for line in lines if line["message"] == "where")
    assert app_line["tags"] == ["a"] and "interlock.log.stack_info" in app_line
