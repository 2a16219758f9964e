"""Signals, as in Celery: ``@task_success.connect`` and friends.

A receiver that raises is logged and skipped, so one faulty hook cannot stop a worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

Receiver = Callable[..., Any]


class Signal:
    """A named hook that receivers connect to.

    Example:
        >>> done = Signal("done")
        >>> @done.connect
        ... def report(sender=None, **kwargs):
        ...     return kwargs["value"]
        >>> done.send(sender=None, value=3)
        [(<function report at ...>, 3)]
    """

    def __init__(self, name: str, providing_args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.providing_args = providing_args
        self._receivers: list[tuple[Any, Receiver, Any]] = []
        self._lock = threading.Lock()

    def connect(
        self,
        receiver: Receiver | None = None,
        *,
        sender: Any = None,
        weak: bool = False,
        dispatch_uid: Any = None,
    ) -> Any:
        """Connect ``receiver``; usable as ``@signal.connect`` or ``@signal.connect(sender=x)``.

        ``weak`` is accepted for Celery compatibility; receivers are always held strongly.
        """
        if receiver is None:
            return lambda fn: self.connect(fn, sender=sender, dispatch_uid=dispatch_uid)
        key = dispatch_uid if dispatch_uid is not None else id(receiver)
        with self._lock:
            if not any(existing == key for existing, _, _ in self._receivers):
                self._receivers.append((key, receiver, sender))
        return receiver

    def disconnect(
        self, receiver: Receiver | None = None, *, sender: Any = None, dispatch_uid: Any = None
    ) -> bool:
        """Disconnect a receiver; returns whether one was connected."""
        key = dispatch_uid if dispatch_uid is not None else id(receiver)
        with self._lock:
            before = len(self._receivers)
            self._receivers = [entry for entry in self._receivers if entry[0] != key]
            return len(self._receivers) != before

    @property
    def receivers(self) -> list[Receiver]:
        return [receiver for _, receiver, _ in self._receivers]

    def send(self, sender: Any = None, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver connected for ``sender`` (or for any sender)."""
        if not self._receivers:
            return []
        return self._call(list(self._receivers), sender, named)

    def send_to_late(self, seen: list[Receiver], sender: Any = None,
                     **named: Any) -> list[tuple[Receiver, Any]]:
        """Call the receivers that are not in ``seen`` (those connected after an
        earlier send, whose receivers were ``seen``), as :meth:`send` would."""
        late = [entry for entry in self._receivers
                if not any(entry[1] is receiver for receiver in seen)]
        return self._call(late, sender, named)

    def _call(self, entries: list[tuple[Any, Receiver, Any]], sender: Any,
              named: dict[str, Any]) -> list[tuple[Receiver, Any]]:
        responses = []
        for _, receiver, wanted in entries:
            if wanted is not None and not _same_sender(wanted, sender):
                continue
            try:
                response = receiver(signal=self, sender=sender, **named)
            except Exception:
                logger.exception("signal %s: receiver %r raised", self.name, receiver)
                continue
            responses.append((receiver, response))
        return responses

    send_robust = send

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"


def _same_sender(wanted: Any, sender: Any) -> bool:
    # Senders match by identity, except names (a worker's node name for celeryd_init),
    # which match by value, as in Celery.
    if isinstance(wanted, (str, bytes)):
        return bool(wanted == sender)
    return wanted is sender


before_task_publish = Signal("before_task_publish")
after_task_publish = Signal("after_task_publish")
task_received = Signal("task_received")
task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_success = Signal("task_success")
task_failure = Signal("task_failure")
task_retry = Signal("task_retry")
task_revoked = Signal("task_revoked")
task_rejected = Signal("task_rejected")
task_unknown = Signal("task_unknown")
task_internal_error = Signal("task_internal_error")
#: Sent first when a worker starts (before it reads its settings), with
#: ``sender=`` its node name, ``instance=`` the worker, ``conf=`` the app's settings
#: and ``options=`` its command-line options: configure workers by name here.
celeryd_init = Signal("celeryd_init")
#: Sent once the worker is set up (queues chosen, logging ready), before it consumes,
#: with ``sender=`` its node name, ``instance=`` and ``conf=``; a receiver may add
#: queues to ``instance.queues``.
celeryd_after_setup = Signal("celeryd_after_setup")
worker_init = Signal("worker_init")
worker_process_init = Signal("worker_process_init")
worker_process_shutdown = Signal("worker_process_shutdown")
worker_ready = Signal("worker_ready")
worker_shutting_down = Signal("worker_shutting_down")
worker_shutdown = Signal("worker_shutdown")
beat_init = Signal("beat_init")
beat_embedded_init = Signal("beat_embedded_init")
setup_logging = Signal("setup_logging")
after_setup_logger = Signal("after_setup_logger")
after_setup_task_logger = Signal("after_setup_task_logger")
import_modules = Signal("import_modules")

__all__ = [
    "Signal",
    "after_setup_logger",
    "after_setup_task_logger",
    "after_task_publish",
    "beat_embedded_init",
    "beat_init",
    "before_task_publish",
    "celeryd_after_setup",
    "celeryd_init",
    "import_modules",
    "setup_logging",
    "task_failure",
    "task_internal_error",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_rejected",
    "task_retry",
    "task_revoked",
    "task_success",
    "task_unknown",
    "worker_init",
    "worker_process_init",
    "worker_process_shutdown",
    "worker_ready",
    "worker_shutdown",
    "worker_shutting_down",
]
