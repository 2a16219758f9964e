"""``python manage.py liteq worker|beat|status|inspect|...``: the liteq command line
with the project's settings.

Every argument is passed to ``liteq`` unchanged. Without ``-A``, the app is
``settings.LITEQ_APP`` if set, else the app of the settings' package (``proj`` for
``proj.settings``: Celery's ``proj/celery.py`` layout), else the app of the
``django.tasks`` backend (:mod:`liteq.contrib.django.tasks`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from liteq.cli import main as liteq_main
from liteq.contrib.django.tasks import backend_app_path


def default_app_path() -> str:
    """The ``-A`` value for this project (see the module's docstring).

    Raises:
        CommandError: no app found.
    """
    configured = getattr(settings, "LITEQ_APP", None)
    if configured:
        return str(configured)
    package = (settings.SETTINGS_MODULE or os.environ.get("DJANGO_SETTINGS_MODULE", "")) \
        .rpartition(".")[0]
    if package and importlib.util.find_spec(f"{package}.celery") is not None:
        return f"{package}.celery"
    path = backend_app_path()
    if path is not None:
        return path
    raise CommandError(
        "no liteq app found: set LITEQ_APP = 'proj.celery:app' in the settings, put the "
        "app in proj/celery.py, use the django.tasks backend, or pass -A module"
    )


def _without_django_options(arguments: list[str]) -> list[str]:
    """Drop ``--settings``/``--pythonpath`` (``manage.py`` has applied them already)."""
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument in ("--settings", "--pythonpath"):
            skip = True
        elif not argument.startswith(("--settings=", "--pythonpath=")):
            kept.append(argument)
    return kept


class Command(BaseCommand):  # type: ignore[misc]
    help = ("The liteq command line with this project's settings: "
            "manage.py liteq worker -l info, manage.py liteq beat, manage.py liteq status, "
            "manage.py liteq --help.")

    def run_from_argv(self, argv: list[str]) -> None:
        """Pass everything after ``liteq`` to the liteq command line (exits with its
        status)."""
        arguments = _without_django_options(argv[2:])
        if not any(a in ("-A", "--app") or a.startswith("--app=") for a in arguments) \
                and arguments not in ([], ["--help"], ["-h"], ["--version"]):
            try:
                arguments = ["-A", default_app_path(), *arguments]
            except CommandError as exc:  # one line, as Django prints its own
                self.stderr.write(f"CommandError: {exc}")
                sys.exit(1)
        liteq_main(arguments)

    def handle(self, *args: Any, **options: Any) -> None:  # call_command("liteq", ...)
        arguments = [str(a) for a in args]
        if not any(a in ("-A", "--app") for a in arguments):
            arguments = ["-A", default_app_path(), *arguments]
        try:
            liteq_main(arguments)
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                raise CommandError(f"liteq {' '.join(args)} exited with {exit_.code}") from None

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("args", nargs="*", help="liteq arguments (worker -l info, ...)")


__all__ = ["Command", "default_app_path"]
