"""``beat_scheduler`` / ``liteq beat -S``: Celery's persistent scheduler is what liteq's
beat is; another scheduler (django_celery_beat's) is refused, never silently ignored."""

from __future__ import annotations

import pytest

from tests.conftest import Project

APP = '''
from liteq import LiteQ

app = LiteQ("proj", broker="@BROKER@")
app.conf.beat_schedule = {"tick": {"task": "proj.tick", "schedule": 60.0}}
app.conf.beat_scheduler = @SCHEDULER@


@app.task
def tick():
    return "tick"
'''

DATABASE_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"


def _project(project: Project, scheduler: str | None) -> None:
    source = APP.replace("@BROKER@", project.broker_url).replace("@SCHEDULER@", repr(scheduler))
    (project.root / "proj.py").write_text(source)
    created = project.liteq("-A", "proj", "call", "proj.tick")  # beat --show reads a store
    assert created.returncode == 0, created.stderr


@pytest.mark.parametrize("command", [("beat",), ("worker", "-B", "-P", "solo")])
def test_another_scheduler_stops_beat_with_the_reason(project: Project,
                                                      command: tuple[str, ...]) -> None:
    _project(project, DATABASE_SCHEDULER)
    done = project.liteq("-A", "proj", *command, timeout=60)
    assert done.returncode != 0
    assert f"beat_scheduler '{DATABASE_SCHEDULER}' is not supported" in done.stderr
    assert "beat_schedule" in done.stderr


def test_the_scheduler_option_is_checked_too(project: Project) -> None:
    _project(project, None)
    done = project.liteq("-A", "proj", "beat", "-S", "django", "--show")
    assert done.returncode != 0 and "beat_scheduler 'django' is not supported" in done.stderr
    done = project.liteq("-A", "proj", "beat", "-S", "celery.beat:PersistentScheduler",
                         "--show")
    assert done.returncode == 0, done.stderr


def test_celerys_persistent_scheduler_is_accepted(project: Project) -> None:
    _project(project, "celery.beat.PersistentScheduler")
    done = project.liteq("-A", "proj", "beat", "--show")
    assert done.returncode == 0, done.stderr
