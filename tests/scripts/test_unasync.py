"""scripts/unasync.py: the generated sync code is current, and the generator's own checks."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "unasync.py"

# uses every substitution once, on as many lines as the sync twin has
SOURCE = '''"""A module (async API)."""
import redis.asyncio
from collections.abc import Awaitable
from interlock._async.lock import async_sleep


class AsyncThing:
    async def __aenter__(self) -> Awaitable[int]:
        async with self.mutex:
            await async_sleep(0)

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
'''


@pytest.fixture
def unasync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    source, target = tmp_path / "_async", tmp_path / "_sync"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "thing.py").write_text(SOURCE)
    return source, target


def test_the_repository_sync_code_is_current(unasync: ModuleType) -> None:
    assert unasync.main(["--check"]) == 0


def test_generates_the_sync_twin_line_for_line(
    unasync: ModuleType, tree: tuple[Path, Path]
) -> None:
    source, target = tree
    assert unasync.main(["--check"], source, target) == 1  # not generated yet
    assert unasync.main([], source, target) == 0
    generated = (target / "pkg" / "thing.py").read_text()
    assert generated.splitlines()[0] == unasync.HEADER.strip()
    assert generated.splitlines()[1:] == [
        '"""A module (sync API)."""',
        "import redis",
        "from collections.abc import Awaitable",
        "from interlock._sync.lock import sleep",
        "",
        "",
        "class Thing:",
        "    def __enter__(self) -> int:",
        "        with self.mutex:",
        "            sleep(0)",
        "",
        "    def __exit__(self, *exc: object) -> None:",
        "        self.close()",
    ]
    assert unasync.main(["--check"], source, target) == 0


def test_fails_on_a_substitution_no_file_uses(
    unasync: ModuleType, tree: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tree
    (source / "pkg" / "thing.py").write_text(SOURCE.replace("redis.asyncio", "redis"))
    assert unasync.main([], source, target) == 1
    assert not target.exists()  # nothing written
    assert "'\\\\bredis\\\\.asyncio\\\\b' is used by no file" in capsys.readouterr().err
    assert unasync.main(["--check"], source, target) == 1


def test_fails_on_a_generated_file_whose_line_count_differs(
    unasync: ModuleType, tree: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tree
    assert unasync.main([], source, target) == 0
    generated = target / "pkg" / "thing.py"
    generated.write_text(generated.read_text() + "extra = 1\n")
    assert unasync.main(["--check"], source, target) == 1
    assert "thing.py has 15 lines; its source has 13" in capsys.readouterr().err


def test_fails_on_a_substitution_that_changes_the_line_count(
    unasync: ModuleType,
    tree: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, target = tree
    joins_lines = (r"\(self\) -> None:\n", "(self) -> None: ")
    monkeypatch.setattr(unasync, "SUBS", [*unasync.SUBS, joins_lines])
    monkeypatch.setattr(
        unasync, "COMPILED", [*unasync.COMPILED, (re.compile(joins_lines[0]), joins_lines[1])]
    )
    (source / "pkg" / "thing.py").write_text(SOURCE + "\n    def close(self) -> None:\n  pass\n")
    assert unasync.main([], source, target) == 1
    assert "thing.py would have 16 lines; its source has 16" in capsys.readouterr().err
    assert not target.exists()
