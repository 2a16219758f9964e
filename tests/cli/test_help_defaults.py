"""``--help`` says the defaults the code really uses, read from the settings table."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from liteq.cli import cli
from liteq.config import OPTIONS

#: (command, option) -> the setting whose default the option falls back to
OPTION_SETTINGS = {
    ("worker", "--prefetch-multiplier"): "worker_prefetch_multiplier",
    ("worker", "--pool"): "worker_pool",
    ("worker", "--concurrency"): "worker_concurrency",
    ("worker", "--max-tasks-per-child"): "worker_max_tasks_per_child",
    ("worker", "--max-memory-per-child"): "worker_max_memory_per_child",
    ("worker", "--time-limit"): "task_time_limit",
    ("worker", "--soft-time-limit"): "task_soft_time_limit",
    ("worker", "--start-method"): "worker_pool_start_method",
    ("worker", "--queues"): "task_default_queue",
}

#: (command, option) -> the default that is no setting's (the option's own)
OWN_DEFAULTS = {
    ("worker", "--hostname"): "liteq@%h",
    ("worker", "--loglevel"): "WARNING",
    ("beat", "--loglevel"): "WARNING",
    ("multi", "--pidfile"): "%n.pid",
    ("multi", "--logfile"): "%n%I.log",
}


def _option_help(command: str, option: str) -> str:
    """The help of ``option`` in ``liteq <command> --help``, joined into one line."""
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    blocks: list[str] = []
    for line in result.output.split("Options:", 1)[1].splitlines():
        if line.startswith("  -"):
            blocks.append(line.strip())
        elif blocks and line.strip():
            blocks[-1] += " " + line.strip()
    for block in blocks:
        names = block.split("  ", 1)[0]
        if re.search(rf"(^|[ ,/]){re.escape(option)}\b", names):
            return block
    raise AssertionError(f"{option} is not in liteq {command} --help:\n{result.output}")


@pytest.mark.parametrize(("command", "option"), sorted(OPTION_SETTINGS))
def test_option_help_names_its_setting_and_the_settings_default(command: str,
                                                                option: str) -> None:
    setting = OPTION_SETTINGS[command, option]
    text = _option_help(command, option)
    assert setting in text, text
    default = OPTIONS[setting].default
    if default is not None:
        assert f"{default}" in text, text


@pytest.mark.parametrize(("command", "option"), sorted(OWN_DEFAULTS))
def test_option_help_shows_its_own_default(command: str, option: str) -> None:
    text = _option_help(command, option)
    assert f"default: {OWN_DEFAULTS[command, option]}" in text, text


def test_prefetch_multiplier_help_says_16() -> None:
    text = _option_help("worker", "--prefetch-multiplier")
    assert OPTIONS["worker_prefetch_multiplier"].default == 16
    assert "16" in text and "4" not in text.split("--prefetch-multiplier", 1)[1], text


def test_the_worker_uses_the_defaults_its_help_states() -> None:
    from liteq import LiteQ
    from liteq.worker import Worker, WorkerOptions
    from liteq.worker.spec import AppSpec

    app = LiteQ("x", broker="sqlite:///unused.db", set_as_current=False)
    worker = Worker(app, AppSpec(broker_url="sqlite:///unused.db"),
                    WorkerOptions(concurrency=2))
    assert worker.pool_name == OPTIONS["worker_pool"].default
    assert worker.capacity == 2 * OPTIONS["worker_prefetch_multiplier"].default
    assert worker.queues == [OPTIONS["task_default_queue"].default]
