"""The web console in a real headless Chromium, on SQLite and on Redis.

A worker and ``liteq console`` run as real processes; the test clicks as a user would.
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from liteq.beat import definitions
from liteq.testing import wait_for

TASKS = '''
import os
import time
from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER@")
app.conf.result_extended = True


@app.task
def add(x, y):
    return x + y


@app.task
def flaky(path):
    """Fails the first time (no file yet), succeeds once the file is there."""
    if not os.path.exists(path):
        open(path, "w").close()
        raise ValueError("first time fails")
    return "fixed"


@app.task
def nap(seconds, path):
    open(path, "w").close()  # it started
    time.sleep(seconds)
    return seconds
'''

#: Security is the web layer's: checked once, on SQLite (the pages work on both).
SECURITY_ON_SQLITE = pytest.mark.parametrize("transport_kind", ["sqlite"])
#: Where the first test saves a screenshot of the overview (the README's docs/console.png).
SCREENSHOT = os.environ.get("LITEQ_CONSOLE_SCREENSHOT")


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def transport_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _tasks(project: Any) -> Any:
    """The task module, its store created (the console only reads an existing one)."""
    tasks = project.module(TASKS)
    tasks.app.broker.open()
    return tasks


def _state(page: Any) -> str:
    shown = page.query_selector("#task-state")
    return "" if shown is None else str(shown.inner_text()).strip()


def _wait_state(page: Any, url: str, wanted: str, timeout: float = 15.0) -> None:
    def shows() -> bool:
        page.goto(url)
        return _state(page) == wanted
    wait_for(shows, timeout=timeout, interval=0.2)


def test_a_sent_task_appears_live_and_a_failed_one_is_retried_with_a_click(
        project: Any, browser: Any, start_console: Any, tmp_path: Path) -> None:
    tasks = _tasks(project)
    console = start_console(project.root, project.location)
    page = browser.new_page()
    page.goto(f"{console.url}/tasks")
    assert page.title().startswith("Tasks")

    result = tasks.add.delay(20, 22)  # no worker yet: it waits, and shows up live
    page.wait_for_selector(f'tr[data-task-id="{result.id}"]', timeout=5000)
    assert "PENDING" in page.inner_text(f'tr[data-task-id="{result.id}"]')

    project.worker()
    assert result.get(timeout=15) == 42
    page.goto(f"{console.url}/task/{result.id}")  # the timeline, without track_started
    assert page.inner_text("#received").startswith("received ")
    assert page.inner_text("#started").startswith("started ")
    assert "(SUCCESS, ran " in page.inner_text("#finished")
    flag = tmp_path / "flaky.flag"
    failed = tasks.flaky.delay(str(flag))
    with pytest.raises(ValueError):
        failed.get(timeout=15)

    page.goto(f"{console.url}/task/{failed.id}")
    assert _state(page) == "FAILURE"
    assert "first time fails" in page.inner_text("#exception")
    assert "Traceback" in page.inner_text("dl.fields")
    page.click("#retry")
    page.wait_for_selector("#retried-as")
    assert page.inner_text("#message").startswith("retried as")
    page.click("#retried-as")
    _wait_state(page, page.url, "SUCCESS")
    assert page.inner_text("#result") == '"fixed"'
    page.goto(f"{console.url}/task/{failed.id}")  # the old one links to the new one
    assert page.query_selector("#retry") is None
    assert page.query_selector("#retried-as") is not None

    page.goto(f"{console.url}/")
    assert page.inner_text("#workers-alive") == "1"
    page.goto(f"{console.url}/workers")
    assert "solo" in page.inner_text("#workers")
    # SQLite busy retries as the worker's heartbeat reports them
    assert ("Busy retries" in page.inner_text("#workers thead")) == (project.transport == "sqlite")
    if SCREENSHOT and project.transport == "sqlite":
        for n in range(3):  # a queue no worker consumes, and a task for later
            tasks.add.apply_async((n, n), queue="reports")
        tasks.add.apply_async((5, 5), countdown=600)
        page.set_viewport_size({"width": 1280, "height": 860})
        page.goto(f"{console.url}/")
        page.screenshot(path=SCREENSHOT, full_page=True)
    page.close()


def test_revoke_with_a_click_takes_effect(project: Any, browser: Any,
                                          start_console: Any) -> None:
    tasks = _tasks(project)
    console = start_console(project.root, project.location)
    later = tasks.add.apply_async((1, 2), countdown=1)
    page = browser.new_page()
    page.goto(f"{console.url}/task/{later.id}")
    assert _state(page) == "SCHEDULED"
    page.click("#revoke")
    assert page.inner_text("#message") == "revoked"
    assert _state(page) == "REVOKED"
    project.worker()
    wait_for(lambda: later.state == "REVOKED", timeout=10)
    console.stop()  # history is the store's: a new console shows it
    again = start_console(project.root, project.location)
    page.goto(f"{again.url}/tasks?state=REVOKED")
    assert "REVOKED" in page.inner_text(f'tr[data-task-id="{later.id}"]')
    page.close()


def test_terminate_with_a_click_kills_a_running_task(project: Any, browser: Any,
                                                     start_console: Any,
                                                     tmp_path: Path) -> None:
    tasks = _tasks(project)
    project.worker("--concurrency", "1", pool="prefork")
    started = tmp_path / "nap.started"
    running = tasks.nap.delay(120, str(started))
    wait_for(started.exists, timeout=20)
    console = start_console(project.root, project.location)
    page = browser.new_page()
    page.goto(f"{console.url}/task/{running.id}")
    assert _state(page) == "RECEIVED"  # held by the worker (no task_track_started)
    page.click("#terminate")
    assert page.inner_text("#message") == "terminated"
    _wait_state(page, page.url, "REVOKED", timeout=30)  # killed, long before 120 s
    assert running.state == "REVOKED"
    assert tasks.add.delay(2, 3).get(timeout=20) == 5  # the pool replaced its child
    page.close()


def test_retry_every_failed_task_matching_the_filter(project: Any, browser: Any,
                                                     start_console: Any,
                                                     tmp_path: Path) -> None:
    tasks = _tasks(project)
    project.worker()
    failed = [tasks.flaky.delay(str(tmp_path / f"flag{n}")) for n in range(2)]
    fine = tasks.add.delay(1, 1)
    for result in failed:
        with pytest.raises(ValueError):
            result.get(timeout=15)
    assert fine.get(timeout=15) == 2
    console = start_console(project.root, project.location)
    page = browser.new_page()
    page.goto(f"{console.url}/tasks?name={tasks.__name__}.flaky&state=FAILURE")
    assert page.locator("#task-rows tr").count() == 2
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#retry-failed")
    assert "Retried 2 failed tasks" in page.inner_text(".notice")
    page.goto(f"{console.url}/tasks?name={tasks.__name__}.flaky&state=SUCCESS")

    def both_succeeded() -> bool:
        page.reload()
        return bool(page.locator("#task-rows tr[data-task-id]").count() == 2)

    wait_for(both_succeeded, timeout=15, interval=0.3)
    page.goto(f"{console.url}/tasks?q=flag1")  # a substring of the arguments
    assert page.locator("#task-rows tr[data-task-id]").count() == 2  # the failure, its retry
    page.close()


def _post(url: str, data: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=data, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@SECURITY_ON_SQLITE
def test_an_action_without_the_csrf_token_is_refused(project: Any, browser: Any,
                                                     start_console: Any) -> None:
    tasks = _tasks(project)
    console = start_console(project.root, project.location)
    waiting = tasks.add.apply_async((1, 1), countdown=60)
    url = f"{console.url}/task/{waiting.id}/revoke"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert _post(url, b"", form) == 403
    assert _post(url, b"csrf_token=guess", {**form, "Cookie": "liteq_csrf=other"}) == 403
    page = browser.new_page()  # a page from another site posting the console's form
    page.set_content(f'<form method="post" action="{url}"><input name="csrf_token" '
                     f'value="x"><button id="go">go</button></form>')
    page.click("#go")
    assert "403" in page.inner_text("body")
    page.close()
    assert waiting.state == "PENDING"
    assert tasks.app.broker.messages(task_ids=[waiting.id])


@SECURITY_ON_SQLITE
def test_read_only_has_no_actions(project: Any, browser: Any, start_console: Any) -> None:
    tasks = _tasks(project)
    console = start_console(project.root, project.location, "--read-only")
    waiting = tasks.add.apply_async((1, 1), countdown=60)
    page = browser.new_page()
    page.goto(f"{console.url}/task/{waiting.id}")
    assert page.query_selector("#revoke") is None
    page.goto(f"{console.url}/")
    assert page.query_selector("button") is None
    tasks.app.conf.beat_schedule = {"every-minute": {"task": f"{tasks.__name__}.add",
                                                     "schedule": 60.0, "args": (1, 1)}}
    stored = [d.stored(time.time() + 60) for d in definitions(tasks.app).values()]
    tasks.app.backend.beat_sync(stored)  # what a beat stores when it starts
    page.goto(f"{console.url}/beat")
    row = page.inner_text("#beat tbody tr")
    assert "every-minute" in row and f"{tasks.__name__}.add" in row and "60" in row
    page.close()
    assert _post(f"{console.url}/task/{waiting.id}/revoke", b"") == 404  # no such route
    assert waiting.state == "PENDING"


@SECURITY_ON_SQLITE
def test_a_token_is_asked_for_and_a_non_local_bind_needs_one(
        project: Any, browser: Any, start_console: Any) -> None:
    _tasks(project)
    refused = project.liteq("console", project.location, "--host", "0.0.0.0", timeout=30)
    assert refused.returncode == 2
    assert "--token" in refused.stderr and "LITEQ_CONSOLE_TOKEN" in refused.stderr
    console = start_console(project.root, project.location, "--token", "s3cret")
    page = browser.new_page()
    response = page.goto(f"{console.url}/")
    assert response.status == 401
    page.goto(f"{console.url}/tasks?token=s3cret")  # sets a cookie, then redirects
    assert page.url == f"{console.url}/tasks"
    assert page.title().startswith("Tasks")
    page.close()


@SECURITY_ON_SQLITE
def test_hidden_tasks_show_neither_arguments_nor_results(
        project: Any, browser: Any, start_console: Any) -> None:
    tasks = _tasks(project)
    console = start_console(project.root, project.location, "--hide", "*.add")
    secret = tasks.add.delay(1234567, 1)
    project.worker()
    assert secret.get(timeout=15) == 1234568
    page = browser.new_page()
    page.goto(f"{console.url}/task/{secret.id}")
    body = page.inner_text("body")
    assert "1234567" not in body and "1234568" not in body and "hidden" in body
    page.goto(f"{console.url}/tasks?q=1234567")
    assert re.search(r"\b0 tasks\b", page.inner_text(".pager"))
    page.close()


def test_pause_and_resume_a_queue_with_a_click(project: Any, browser: Any,
                                               start_console: Any) -> None:
    tasks = _tasks(project)
    console = start_console(project.root, project.location)
    tasks.add.delay(1, 1)
    page = browser.new_page()
    page.goto(f"{console.url}/")
    page.click('tr[data-queue="celery"] button.pause')
    assert "Paused queue celery" in page.inner_text("body")
    assert "paused" in page.inner_text('tr[data-queue="celery"]')
    assert tasks.app.control.paused_queues() == ["celery"]
    page.click('tr[data-queue="celery"] button.pause')  # now it says Resume
    assert "Resumed queue celery" in page.inner_text("body")
    assert tasks.app.control.paused_queues() == []
    page.close()
