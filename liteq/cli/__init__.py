"""The ``liteq`` command line.

Every subcommand takes the app as ``-A module`` (before or after the subcommand name)
or the database path/URL as an argument. Exit codes: 0 ok, 1 task or command failure,
2 usage error; errors are one line on stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from liteq.cli import (  # register the commands
    admin,
    beat,
    console,
    control,
    doctor,
    events,
    inspect,
    multi,
    shell,
    worker,
)
from liteq.cli.base import State, cli

if TYPE_CHECKING:
    from liteq.app import LiteQ


def main(argv: Sequence[str] | None = None, app: LiteQ | None = None) -> None:
    """The ``liteq`` console script (``app.start()`` passes its app)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    cli.main(args=list(argv) if argv is not None else None, prog_name="liteq",
             obj=State(app=app))


__all__ = ["admin", "beat", "cli", "console", "control", "doctor", "events", "inspect",
           "main", "multi", "shell", "worker"]
