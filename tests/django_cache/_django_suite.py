"""Django's own cache tests (``tests/cache/`` of the Django source), fetched once.

The wheel does not ship Django's test suite; the sdist of the installed version does.
``suite_dir()`` downloads it with ``pip download django==<version> --no-binary :all:``
into ``.venv/django-tests/<version>/`` (or ``INTERLOCK_DJANGO_TESTS``) and extracts only
``tests/cache/``. A failed download raises, naming what to run: never a skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]


def suite_dir() -> Path:
    """A directory holding Django's ``cache`` test package (importable as ``cache``)."""
    version = django.__version__
    base = Path(os.environ.get("INTERLOCK_DJANGO_TESTS") or ROOT / ".venv" / "django-tests")
    target = base / version
    if (target / "cache" / "tests.py").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    sdist = target / f"django-{version}.tar.gz"
    if not sdist.is_file():
        command = [
            sys.executable, "-m", "pip", "download", f"django=={version}",
            "--no-binary", ":all:", "--no-deps", "-d", str(target),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        found = sorted(target.glob("[Dd]jango-*.tar.gz"))
        if done.returncode != 0 or not found:
            raise RuntimeError(
                f"Django's cache test suite is needed and could not be downloaded "
                f"(pip exit {done.returncode}: {done.stderr.strip()[-400:]}). Fetch it with\n"
                f"  {' '.join(command)}\n"
                "or set INTERLOCK_DJANGO_TESTS to a directory holding "
                f"{version}/django-{version}.tar.gz"
            )
        sdist = found[0]
    prefix = f"{sdist.name.removesuffix('.tar.gz')}/tests/cache/"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix) and m.isfile()]
        for member in members:
            member.name = "cache/" + member.name[len(prefix) :]
            archive.extract(member, target, filter="data")
    if not (target / "cache" / "tests.py").is_file():
        raise RuntimeError(f"{sdist} holds no {prefix}tests.py; delete it and run again")
    return target
