"""Flow control options of a task, and the :class:`~liteq.messages.Flow` of one call.

A task may limit how many of its calls run at once (``concurrency_limit``, per key
with ``concurrency_key``), how often they start (``rate_limit``, per key with
``rate_limit_key``, bursts of ``rate_limit_burst``), and refuse duplicates
(``unique``, ``unique_for``, ``unique_until``; or ``apply_async(unique_key=...)``).
The keys are computed here, at send time, from the call's arguments and stored with
the message; the transport decides in its claim (``liteq.transports``).

Example:
    >>> spec = FlowSpec.of("tasks.export", concurrency_limit=2,
    ...                    concurrency_key=lambda customer_id: customer_id)
    >>> spec.flow((42,), {}, now=0.0).concurrency_key
    'c:tasks.export:42'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from liteq.exceptions import EncodeError, ImproperlyConfigured
from liteq.messages import Flow
from liteq.ratelimits import parse_rate

#: What ``unique_until`` accepts (None is "finished").
UNTIL = ("started", "finished")


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise ImproperlyConfigured for flow options that can never work.

    Example:
        >>> check_options("t", {"concurrency_limit": -1})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        liteq.exceptions.ImproperlyConfigured: task t: concurrency_limit must be a ...
    """
    FlowSpec.of(name, **{k: v for k, v in options.items() if k in _OPTIONS})


_OPTIONS = ("concurrency_limit", "concurrency_key", "rate_limit", "rate_limit_key",
            "rate_limit_burst", "unique", "unique_for", "unique_until")


class FlowSpec:
    """A task's flow options, checked once; :meth:`flow` makes the Flow of one call."""

    __slots__ = ("burst", "concurrency_key", "concurrency_limit", "name", "rate",
                 "rate_limit_key", "unique", "unique_for", "unique_until")

    def __init__(self, name: str) -> None:
        self.name = name
        self.concurrency_limit: int | None = None
        self.concurrency_key: Callable[..., Any] | None = None
        self.rate: float | None = None
        self.rate_limit_key: Callable[..., Any] | None = None
        self.burst = 1
        self.unique = False
        self.unique_for: float | None = None
        self.unique_until = "finished"

    @classmethod
    def of(cls, name: str, *, concurrency_limit: Any = None, concurrency_key: Any = None,
           rate_limit: Any = None, rate_limit_key: Any = None, rate_limit_burst: Any = None,
           unique: Any = False, unique_for: Any = None, unique_until: Any = None) -> FlowSpec:
        """Check and keep a task's options.

        Raises:
            ImproperlyConfigured: a limit that is not a positive integer, a key that is
                not callable, a bad rate or ``unique_until``.
        """
        spec = cls(name)
        if concurrency_limit is not None:
            spec.concurrency_limit = _positive(name, "concurrency_limit", concurrency_limit)
        if concurrency_key is not None:
            if concurrency_limit is None:
                raise ImproperlyConfigured(f"task {name}: concurrency_key needs concurrency_limit")
            spec.concurrency_key = _callable(name, "concurrency_key", concurrency_key)
        try:
            spec.rate = parse_rate(rate_limit)
        except ValueError as exc:
            raise ImproperlyConfigured(f"task {name}: {exc}") from None
        if rate_limit_key is not None:
            spec.rate_limit_key = _callable(name, "rate_limit_key", rate_limit_key)
        if rate_limit_burst is not None:
            spec.burst = _positive(name, "rate_limit_burst", rate_limit_burst)
        spec.unique = bool(unique)
        spec.unique_for = _unique_for(name, unique_for)
        spec.unique_until = _until(name, unique_until)
        return spec

    @property
    def active(self) -> bool:
        """Whether calls of this task carry a Flow at all."""
        return self.concurrency_limit is not None or self.rate is not None or self.unique

    def flow(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, now: float,
             unique_key: str | None = None, unique_for: Any = None,
             unique_until: Any = None) -> Flow | None:
        """The Flow of one call (None when it is under no flow control).

        Raises:
            EncodeError: a key function raised or returned None, or ``unique=True``
                with arguments that are not json.
            ImproperlyConfigured: a bad ``unique_for`` or ``unique_until``.
        """
        ckey = rkey = ukey = None
        if self.concurrency_limit is not None:
            ckey = f"c:{self.name}"
            if self.concurrency_key is not None:
                ckey += f":{self._key('concurrency_key', self.concurrency_key, args, kwargs)}"
        if self.rate is not None:
            rkey = f"rate:{self.name}"  # the bucket's name before keys existed
            if self.rate_limit_key is not None:
                rkey += f":{self._key('rate_limit_key', self.rate_limit_key, args, kwargs)}"
        if unique_key is not None:
            ukey = f"u:{unique_key}"
        elif self.unique:
            ukey = f"u:{self.name}:{self._digest(args, kwargs)}"
        if ckey is None and rkey is None and ukey is None:
            return None
        seconds = self.unique_for if unique_for is None else _unique_for(self.name, unique_for)
        until = self.unique_until if unique_until is None else _until(self.name, unique_until)
        return Flow(
            concurrency_key=ckey, concurrency_limit=self.concurrency_limit, rate_key=rkey,
            rate=self.rate, burst=self.burst, unique_key=ukey,
            unique_until=until if ukey else "finished",
            unique_expires=now + seconds if ukey and seconds is not None else None,
        )

    def _key(self, option: str, function: Callable[..., Any], args: tuple[Any, ...],
             kwargs: Mapping[str, Any]) -> str:
        try:
            value = function(*args, **kwargs)
        except Exception as exc:
            raise EncodeError(
                f"{option} of task {self.name} raised {type(exc).__name__}: {exc}"
            ) from exc
        if value is None:
            raise EncodeError(f"{option} of task {self.name} returned None, not a key")
        return str(value)

    def _digest(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        try:
            text = json.dumps([list(args), dict(kwargs)], sort_keys=True,
                              separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise EncodeError(
                f"unique=True: the arguments of task {self.name} make its unique key and "
                f"must be json ({exc}); pass unique_key= instead"
            ) from exc
        return hashlib.sha1(text.encode()).hexdigest()


def task_flow(task: Any, default_rate: Any = None,
              rates_disabled: bool = False) -> FlowSpec | None:
    """A task's flow control from its options (None: none, as for most tasks).

    Raises:
        ImproperlyConfigured: an option that can never work (see :meth:`FlowSpec.of`).
    """
    rate = None if rates_disabled else task.rate_limit or default_rate
    spec = FlowSpec.of(
        task.name, concurrency_limit=task.concurrency_limit,
        concurrency_key=_unbound(task, task.concurrency_key), rate_limit=rate,
        rate_limit_key=_unbound(task, task.rate_limit_key),
        rate_limit_burst=task.rate_limit_burst, unique=task.unique,
        unique_for=task.unique_for, unique_until=task.unique_until,
    )
    return spec if spec.active else None


def _unbound(task: Any, value: Any) -> Any:
    """A key function given as a task option is a class attribute: its plain function
    (a function of the task's arguments), not a method of the task."""
    return getattr(value, "__func__", value) if getattr(value, "__self__", None) is task \
        else value


def _positive(name: str, option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(
            f"task {name}: {option} must be a positive integer, not {value!r}")
    return value


def _callable(name: str, option: str, value: Any) -> Callable[..., Any]:
    if not callable(value):
        raise ImproperlyConfigured(
            f"task {name}: {option} must be a function of the task's arguments, "
            f"not {value!r}")
    return value  # type: ignore[no-any-return]


def _unique_for(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ImproperlyConfigured(
            f"task {name}: unique_for must be a positive number of seconds, not {value!r}")
    return float(value)


def _until(name: str, value: Any) -> str:
    if value is None:
        return "finished"
    if value not in UNTIL:
        raise ImproperlyConfigured(
            f"task {name}: unique_until must be 'started' or 'finished', not {value!r}")
    return str(value)


__all__ = ["UNTIL", "FlowSpec", "check_options", "task_flow"]
