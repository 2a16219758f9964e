"""The peer systems' virtual environment: ``python -m bench.peers install``.

Celery, Huey and potatoq are installed into ``bench/.peers/venv`` (ignored by git), so
the liteq environment stays clean. Their producers and workers run with that venv's
Python; the harness itself only needs the standard library and ``psutil``.

Usage:
    python -m bench.peers install     # create or update the venv
    python -m bench.peers show        # where it is and what is in it
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from functools import lru_cache
from pathlib import Path

#: The packages of the peer venv (one documented install command installs all of them).
REQUIREMENTS = (
    "celery[redis]>=5.3,<6",
    "redis>=5",
    "huey>=2.5",
    "potatoq==26.1a8",
)

#: The distributions whose versions the results header names.
DISTRIBUTIONS = ("celery", "kombu", "redis", "huey", "potatoq")

PEERS_DIR = Path(__file__).resolve().parent / ".peers"
VENV_DIR = PEERS_DIR / "venv"
INSTALL_HINT = "not installed (run: python -m bench.peers install)"


def python() -> Path:
    """The peer venv's interpreter (it may not exist)."""
    return VENV_DIR / "bin" / "python"


def installed() -> bool:
    return python().exists()


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Installed versions of the peer distributions, {} when the venv is missing."""
    if not installed():
        return {}
    code = (
        "import json, importlib.metadata as m\n"
        f"names = {list(DISTRIBUTIONS)!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    try:
        text = subprocess.run([str(python()), "-c", code], capture_output=True, text=True,
                              timeout=60, check=True).stdout
        return dict(json.loads(text))
    except (subprocess.SubprocessError, ValueError, OSError):
        return {}


def has(distribution: str) -> bool:
    return distribution in versions()


def install() -> int:
    """Create the venv (with pip) and install :data:`REQUIREMENTS` into it."""
    if not installed():
        VENV_DIR.parent.mkdir(parents=True, exist_ok=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV_DIR)
    command = [str(python()), "-m", "pip", "install", "--quiet", *REQUIREMENTS]
    print("+", " ".join(command), flush=True)
    code = subprocess.call(command)
    versions.cache_clear()
    if code == 0:
        show()
    return code


def show() -> int:
    print(f"peer venv: {VENV_DIR} ({'present' if installed() else 'missing'})")
    for name, version in sorted(versions().items()):
        print(f"  {name} {version}")
    print(f"redis-server: {shutil.which('redis-server') or 'missing'}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["install"]:
        return install()
    if argv[:1] in (["show"], []):
        return show()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(main(sys.argv[1:]))
