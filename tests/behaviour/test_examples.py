"""Every example in ``examples/`` runs as its README says, on SQLite and on Redis.

Each test copies the example into a temporary directory and runs the README's
commands there (workers with ``liteq ...``, clients with ``python ...``); on Redis
the examples read ``BROKER_URL`` from the environment, as their READMEs say.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from liteq.testing import WorkerProcess, wait_for
from tests.conftest import Project, _pythonpath

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Example:
    """One example copied into the test's directory, with its environment."""

    def __init__(self, project: Project, name: str) -> None:
        self.project = project
        self.dir = project.root / name
        shutil.copytree(EXAMPLES / name, self.dir,
                        ignore=shutil.ignore_patterns("__pycache__", "*.db", "*.db-*"))
        self.env = {"PYTHONPATH": f"{self.dir}{os.pathsep}{_pythonpath()}"}
        if project.transport == "redis":
            self.env["BROKER_URL"] = project.broker_url

    def worker(self, *args: str, ready: str = "ready.") -> WorkerProcess:
        """``liteq <args>`` in the background (a worker command of the README)."""
        log = self.dir / f"worker-{len(self.project.workers)}.log"
        worker = WorkerProcess(args, cwd=self.dir, log=str(log), env=self.env,
                               command=[sys.executable, "-m", "liteq"])
        self.project.workers.append(worker)
        worker.start()
        worker.wait_for_output(ready, timeout=60)
        return worker

    def run(self, *argv: str, timeout: float = 90) -> str:
        """``python <argv>`` or ``liteq <argv>`` (when argv starts with ``-m``)."""
        done = subprocess.run([sys.executable, *argv], cwd=self.dir, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **self.env})
        assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
        return done.stdout

    def load(self, filename: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
        """Import one of the example's modules here, under its own name (its tasks'
        names are the worker's), for a web framework's test client."""
        monkeypatch.chdir(self.dir)
        monkeypatch.syspath_prepend(str(self.dir))
        for key, value in self.env.items():
            if key != "PYTHONPATH":
                monkeypatch.setenv(key, value)
        name = Path(filename).stem
        spec = importlib.util.spec_from_file_location(name, self.dir / filename)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)  # the test's, then the old one
        spec.loader.exec_module(module)
        return module


def test_first_steps(project: Project) -> None:
    example = Example(project, "first_steps")
    example.worker("-A", "tasks", "worker", "-l", "info")
    out = example.run("client.py").splitlines()
    assert out[0] in ("ready right away? False", "ready right away? True")  # a race
    assert out[1:] == ["add(4, 4) = 8", "state: SUCCESS",
                   "divide(1, 0) raised ZeroDivisionError",
                   "traceback ends with: ZeroDivisionError: division by zero"]


def test_configuration_module_routes_and_rate_limits(project: Project) -> None:
    example = Example(project, "configuration")
    low = example.worker("-A", "tasks", "worker", "-Q", "low-priority", "-n", "low@%h",
                         "-l", "info")
    example.worker("-A", "tasks", "worker", "-Q", "celery", "-n", "default@%h", "-l", "info")
    out = example.run("client.py").splitlines()
    assert out[0] == "add goes to queue: low-priority"
    assert out[1] == f"adds: {[2 * i for i in range(20)]}"
    seconds = float(out[2].split(" took ")[1].rstrip("s"))
    assert seconds >= 0.9  # 20 at 10/s: at least the second ten waited for tokens
    assert out[3] == "mul: 42"
    assert "Task tasks.add[" in low.output() and "Task tasks.mul[" not in low.output()


def test_routing_one_worker_per_queue(project: Project) -> None:
    example = Example(project, "routing")
    for queue in ("default", "videos", "images"):
        example.worker("-A", "proj", "worker", "-Q", queue, "-n", f"{queue}@%h", "-l", "info",
                       "-P", "solo")
    out = example.run("client.py").splitlines()
    assert [line.split() for line in out] == [
        ["proj.tasks.add", "->", "5", "on", "default"],
        ["proj.videos.transcode", "->", "holiday.mp4", "on", "videos"],
        ["proj.images.thumbnail", "->", "cat-small.png", "on", "images"],
    ]


def test_periodic_tasks_with_beat(project: Project) -> None:
    example = Example(project, "periodic")
    example.worker("-A", "tasks", "worker", "-B", "-l", "info", "-P", "solo")
    ticks = example.dir / "ticks.log"

    def sources() -> set[str]:
        lines = ticks.read_text().splitlines() if ticks.exists() else []
        return {line.split(" ", 1)[1] for line in lines}

    wait_for(lambda: {"beat_schedule", "add_periodic_task"} <= sources(), 20)
    shown = example.run("-m", "liteq", "-A", "tasks", "beat", "--show")
    assert "tick-every-second" in shown and "report-every-monday-morning" in shown
    assert "tick every 2s" in shown


def test_project_with_settings_and_many_workers(project: Project) -> None:
    example = Example(project, "project")
    try:
        example.run("-m", "liteq", "multi", "start", "w1", "w2", "-A", "proj", "-l", "info",
                    "-c", "2")
        example.run("-m", "liteq", "multi", "start", "w3", "-A", "proj", "-l", "info",
                    "-Q", "reports")
        out = example.run("client.py").splitlines()
        assert out[0] == f"total: {sum(sum(range(n)) for n in range(1000, 1040))}"
        assert set(out[1].removeprefix("workers used: ").split(", ")) <= {"w1", "w2"}
        assert out[2] == "report of 40 on w3"
    finally:
        stopped = subprocess.run(
            [sys.executable, "-m", "liteq", "multi", "stopwait", "w1", "w2", "w3"],
            cwd=example.dir, env={**os.environ, **example.env}, capture_output=True,
            text=True, timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert not list(example.dir.glob("w*.pid"))


def test_progress_bar_script(project: Project) -> None:
    example = Example(project, "progress")
    example.worker("-A", "tasks", "worker", "-c", "4", "-l", "info", "-P", "threads")
    out = example.run("send_and_wait.py", "40")
    assert "[" + "#" * 30 + "] 40/40" in out
    assert out.splitlines()[-1] == ("40 images resized, first photo0.jpg@256, "
                                    "last photo39.jpg@256")


async def _serve(api: Any, requests: Any, *, lifespan: bool = False) -> Any:
    """Run ``requests(client)`` against the ASGI app in this event loop (with its
    lifespan, as a server runs it, when asked)."""
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        if not lifespan:
            return await requests(client)
        async with api.router.lifespan_context(api):
            return await requests(client)


def test_fastapi_app_on_the_async_api(project: Project,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    example = Example(project, "fastapi")
    main = example.load("main.py", monkeypatch)
    example.worker("-A", "main", "worker", "-c", "4", "-l", "info", "-P", "threads")

    async def requests(client: httpx.AsyncClient) -> list[Any]:
        added = (await client.get("/add", params={"x": 2, "y": 3})).json()
        task_id = (await client.post("/squares", params={"x": 7, "seconds": 0.5})).json()[
            "task_id"]
        early = (await client.get(f"/tasks/{task_id}")).json()
        late = (await client.get(f"/tasks/{task_id}", params={"wait": 10})).json()
        many = await asyncio.gather(*(client.get("/add", params={"x": i, "y": i})
                                      for i in range(60)))  # 60 handlers awaiting at once
        return [added["result"], early, late["result"], [r.json()["result"] for r in many]]

    added, early, square, many = asyncio.run(_serve(main.api, requests))
    assert added == 5 and square == 49
    assert early == {"task_id": early["task_id"], "ready": False}
    assert many == [2 * i for i in range(60)]


def test_fastapi_app_with_its_worker_inside(project: Project,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    example = Example(project, "fastapi")
    monkeypatch.setenv("EMBEDDED_WORKER", "1")
    main = example.load("main.py", monkeypatch)

    async def requests(client: httpx.AsyncClient) -> Any:
        return (await client.get("/add", params={"x": 20, "y": 22})).json()["result"]

    assert asyncio.run(_serve(main.api, requests, lifespan=True)) == 42  # lifespan's worker


def test_flask_app(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    example = Example(project, "flask")
    module = example.load("app.py", monkeypatch)
    example.worker("-A", "app", "worker", "-l", "info", "-P", "solo")
    client = module.web.test_client()
    reply = client.post("/count", json={"text": "to be or not to be"})
    assert reply.status_code == 202
    task_id = reply.get_json()["task_id"]
    body = client.get(f"/tasks/{task_id}?wait=10").get_json()
    assert body == {"task_id": task_id, "state": "SUCCESS", "result": 6}


def test_desktop_app_quits_and_resumes(project: Project) -> None:
    example = Example(project, "desktop")
    first = example.run("photos.py", "--headless", "--add", "20", "--quit-after", "1")
    made, waiting = (int(word) for word in first.split() if word.isdigit())
    assert made + waiting == 20 and 0 < made < 20, first
    second = example.run("photos.py", "--headless")
    assert second.strip() == "20 thumbnails made, 0 waiting"
    done = (example.dir / "done.txt").read_text().split()
    assert sorted(done) == [f"photo{i:03}" for i in range(20)]  # each made exactly once


@pytest.mark.sqlite_only(reason="the suite gives each test its own SQLite file")
def test_pytest_suite_example(project: Project) -> None:
    example = Example(project, "pytest_suite")
    out = example.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    assert "5 passed" in out
