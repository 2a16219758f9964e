"""The message envelope: what ``delay()`` stores and a worker claims.

A message is stored as a few plain columns the broker needs without decoding anything
(task id and name, queue, priority, eta, expiry), a small json *header* with the rest
of Celery's protocol fields, and a *body* holding ``[args, kwargs]`` in the task's
serializer. A worker can therefore always name the task of a message whose body it
cannot decode, and record that as a FAILURE instead of dropping it.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from liteq import serialization
from liteq.exceptions import DecodeError, EncodeError

#: Version of the header layout; a worker refuses newer versions with a clear reason.
PROTOCOL_VERSION = 1

#: Encoded headers by their fields (see Message._header), and parsed ones by their bytes.
_HEADERS: dict[tuple[Any, ...], bytes] = {}
_PARSED: dict[bytes, dict[str, Any]] = {}


@dataclass(frozen=True, slots=True)
class Flow:
    """Flow control a message is under, decided at send time and stored with it.

    The transport admits a message to its queue only while its concurrency key has a
    free slot and its rate key a token (``liteq.transports``: the claim decides), and
    refuses a second message with the same unique key while the first is waiting or
    running. Keys are full names (``"<task name>:<key>"``), so two tasks never share
    one by accident.
    """

    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    rate_key: str | None = None
    rate: float | None = None  #: tokens per second
    burst: int = 1  #: tokens a rested bucket holds
    unique_key: str | None = None
    #: "started": the unique key is free once a worker claims the task; "finished"
    #: (the default): once it ends for good (retries keep it)
    unique_until: str = "finished"
    unique_expires: float | None = None  #: epoch seconds; None: until released

    def dumps(self) -> str:
        """The stored form (compact json, defaults left out)."""
        fields = {"ck": self.concurrency_key, "cl": self.concurrency_limit,
                  "rk": self.rate_key, "r": self.rate,
                  "b": self.burst if self.burst != 1 else None,
                  "uk": self.unique_key,
                  "uu": self.unique_until if self.unique_until != "finished" else None,
                  "ux": self.unique_expires}
        return serialization.plain_json_dumps(
            {k: v for k, v in fields.items() if v is not None}).decode()

    @classmethod
    def loads(cls, text: str | bytes | None) -> Flow | None:
        """A stored flow back (None for None or an empty text)."""
        if not text:
            return None
        data = serialization.json_loads(text)
        return cls(concurrency_key=data.get("ck"), concurrency_limit=data.get("cl"),
                   rate_key=data.get("rk"), rate=data.get("r"), burst=data.get("b", 1),
                   unique_key=data.get("uk"), unique_until=data.get("uu", "finished"),
                   unique_expires=data.get("ux"))

    @property
    def gated(self) -> bool:
        """Whether the message waits for a slot or a token before it is ready."""
        return self.concurrency_key is not None or self.rate_key is not None


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message as the transports store it: plain columns, header json, body bytes."""

    task_id: str
    task_name: str
    queue: str
    priority: int
    eta: float | None  #: epoch seconds; None means "now"
    expires: float | None  #: epoch seconds
    acks_late: bool
    content_type: str
    header: bytes
    body: bytes
    #: flow control (concurrency, rate, uniqueness); None for most messages
    flow: Flow | None = None
    #: why a stored row cannot be decoded (a column of the wrong type, as a foreign or
    #: hostile writer may leave it): the worker fails it with this reason
    defect: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A task message with Celery's protocol fields.

    Example:
        >>> m = Message(id="1", task="tasks.add", args=(4, 4))
        >>> Message.decode(m.encode(), accept=frozenset({"application/json"})).args
        (4, 4)
    """

    id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str = "celery"
    priority: int = 0
    eta: float | None = None
    expires: float | None = None
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    origin: str | None = None
    ignore_result: bool = False
    acks_late: bool = False
    time_limit: float | None = None
    soft_time_limit: float | None = None
    exchange: str | None = None
    routing_key: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    #: canvas and callback options (link, link_error, chain, chord) kept as plain data
    options: Mapping[str, Any] = field(default_factory=dict)
    serializer: str = "json"
    #: flow control decided at send time (``liteq.producer``); None: none
    flow: Flow | None = None

    def encode(self) -> Envelope:
        """Serialize into an :class:`Envelope`.

        Raises:
            EncodeError: the arguments cannot be serialized (the message names which one).
        """
        serializer = serialization.get(self.serializer)
        try:
            body = serialization.dumps_call(serializer, self.args, dict(self.kwargs))
        except EncodeError:
            raise
        except Exception as exc:
            raise EncodeError(describe_unserializable(self, serializer, exc)) from exc
        try:
            header_bytes = self._header()
        except Exception as exc:
            raise EncodeError(f"cannot serialize the headers of {self.task}: {exc}") from exc
        return Envelope(
            task_id=self.id,
            task_name=self.task,
            queue=self.queue,
            priority=self.priority,
            eta=self.eta,
            expires=self.expires,
            acks_late=self.acks_late,
            content_type=serializer.content_type,
            header=header_bytes,
            body=body,
            flow=self.flow,
        )

    def _header(self) -> bytes:
        # A top-level task is its own root: the id column already says so.
        root_id = None if self.root_id == self.id else self.root_id
        if self.headers or self.options:  # user data: may hold datetimes and the like
            return serialization.json_dumps({
                **self._header_fields(root_id), "headers": dict(self.headers),
                "options": dict(self.options),
            })
        key = (self.retries, root_id, self.parent_id, self.group, self.origin,
               self.ignore_result, self.soft_time_limit, self.time_limit, self.exchange,
               self.routing_key, self.eta)
        header = _HEADERS.get(key)
        if header is None:  # most calls of a task share one header: encode it once
            if len(_HEADERS) > 512:
                _HEADERS.clear()
            header = _HEADERS[key] = serialization.plain_json_dumps(self._header_fields(root_id))
        return header

    def _header_fields(self, root_id: str | None) -> dict[str, Any]:
        # Only what differs from the defaults is stored: every row carries its header.
        fields = {
            "retries": self.retries,
            "root_id": root_id,
            "parent_id": self.parent_id,
            "group": self.group,
            "origin": self.origin,
            "ignore_result": self.ignore_result,
            "exchange": self.exchange,
            "routing_key": self.routing_key,
            # the eta the caller asked for (the row's run_at is "now" without one)
            "eta": self.eta,
        }
        header: dict[str, Any] = {"v": PROTOCOL_VERSION}
        header.update((key, value) for key, value in fields.items() if value)
        if self.soft_time_limit is not None or self.time_limit is not None:
            header["timelimit"] = [self.soft_time_limit, self.time_limit]
        return header

    @classmethod
    def decode(cls, envelope: Envelope, accept: frozenset[str]) -> Message:
        """Rebuild a message from its envelope.

        Raises:
            ContentDisallowed: the body's serializer is not in ``accept``.
            DecodeError: the header or body is malformed, or from a newer protocol.
        """
        if envelope.defect is not None:
            raise DecodeError(envelope.defect)
        fields = _decode_header(envelope.header)
        body = serialization.loads(envelope.body, envelope.content_type, accept)
        if (
            not isinstance(body, list)
            or len(body) != 2
            or not isinstance(body[0], list)
            or not isinstance(body[1], dict)
        ):
            raise DecodeError("malformed message body: expected [args, kwargs]")
        if not all(isinstance(name, str) for name in body[1]):
            raise DecodeError("malformed message body: keyword argument names must be text")
        _check_unicode("body", envelope.body, body)
        soft, hard = fields["timelimit"]
        return cls(
            id=envelope.task_id,
            task=envelope.task_name,
            args=tuple(body[0]),
            kwargs=body[1],
            queue=envelope.queue,
            priority=envelope.priority,
            eta=fields["eta"],
            expires=envelope.expires,
            retries=fields["retries"],
            root_id=fields["root_id"] or envelope.task_id,
            parent_id=fields["parent_id"],
            group=fields["group"],
            origin=fields["origin"],
            ignore_result=fields["ignore_result"],
            acks_late=envelope.acks_late,
            time_limit=hard,
            soft_time_limit=soft,
            exchange=fields["exchange"],
            routing_key=fields["routing_key"],
            headers=fields["headers"],
            options=fields["options"],
            serializer=serialization.get(envelope.content_type).name,
            flow=envelope.flow,
        )


def _decode_header(data: bytes) -> dict[str, Any]:
    """The header's fields, checked; headers without user data are parsed once and shared
    (they repeat for every call of a task, and nothing mutates the result)."""
    header = _PARSED.get(data)
    if header is not None:
        return header
    try:
        header = serialization.json_loads(data)
    except Exception as exc:
        raise DecodeError(f"malformed message header: {exc}") from exc
    if not isinstance(header, dict):
        raise DecodeError("malformed message header: not an object")
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise DecodeError(
            f"message protocol version {version!r} is not supported "
            f"(this liteq speaks version {PROTOCOL_VERSION})"
        )
    _check_unicode("header", data, header)
    fields = _checked_header(header)
    if "headers" not in header and "options" not in header:
        if len(_PARSED) > 512:
            _PARSED.clear()
        _PARSED[bytes(data)] = fields
    return fields


#: The largest integer a message field may hold (SQLite's and Redis's 64-bit range).
MAX_INT = 2**63 - 1
_TEXT_FIELDS = ("root_id", "parent_id", "group", "origin", "exchange", "routing_key")


def _check_unicode(part: str, data: bytes, decoded: Any) -> None:
    """Refuse text that is not Unicode (json's lone surrogate escapes, ``"\\udc00"``):
    it cannot be stored or logged. Only parts whose bytes hold such an escape are walked."""
    if b"\\ud" not in data and b"\\uD" not in data:
        return
    stack = [decoded]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                raise DecodeError(f"malformed message {part}: text with a lone surrogate "
                                  f"({_short(value)})") from None
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _malformed(name: str, expected: str, value: Any) -> DecodeError:
    return DecodeError(
        f"malformed message field {name!r}: expected {expected}, "
        f"got {type(value).__name__} {_short(value)}"
    )


def _integer(name: str, value: Any, low: int = -MAX_INT) -> int:
    if type(value) is not int or not low <= value <= MAX_INT:
        raise _malformed(name, f"an integer from {low} to 2**63-1", value)
    return value


def _number(name: str, value: Any, *, low: float = -math.inf) -> float | None:
    """A finite number (int or float, not bool) at least ``low``, or None."""
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or value < low \
            or abs(value) > 1e15:
        raise _malformed(name, "a finite number or null", value)
    return float(value)


def _checked_header(header: dict[str, Any]) -> dict[str, Any]:
    """Every field of a parsed header, checked: a field of the wrong type or range raises
    :class:`DecodeError` naming it (a foreign or hostile producer wrote it)."""
    fields: dict[str, Any] = {
        "retries": _integer("retries", header.get("retries") or 0, low=0),
        "eta": _number("eta", header.get("eta")),
    }
    for name in _TEXT_FIELDS:
        value = header.get(name)
        if value is not None and not isinstance(value, str):
            raise _malformed(name, "text or null", value)
        fields[name] = value
    ignore = header.get("ignore_result")
    if ignore is not None and not isinstance(ignore, bool):
        raise _malformed("ignore_result", "true or false", ignore)
    fields["ignore_result"] = bool(ignore)
    limits = header.get("timelimit")
    if limits is None:
        fields["timelimit"] = (None, None)
    elif not isinstance(limits, list) or len(limits) != 2:
        raise _malformed("timelimit", "[soft, hard] seconds", limits)
    else:
        fields["timelimit"] = (_number("timelimit", limits[0], low=0),
                               _number("timelimit", limits[1], low=0))
    fields["headers"] = _mapping("headers", header.get("headers"))
    fields["options"] = options = _mapping("options", header.get("options"))
    _check_options(options)
    return fields


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise _malformed(name, "an object", value)
    return value


def _check_options(options: dict[str, Any]) -> None:
    """The canvas options a worker acts on: links and chains are lists of signatures, a
    chord names its id, body and size."""
    for name in ("link", "link_error", "chain"):
        value = options.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or not all(
                isinstance(item, dict) and isinstance(item.get("task"), str) for item in value):
            raise _malformed(f"options.{name}", "a list of signatures", value)
    chord = options.get("chord")
    if chord is not None:
        if not isinstance(chord, dict) or not isinstance(chord.get("id"), str) \
                or not isinstance(chord.get("body"), dict) \
                or type(chord.get("size")) is not int:
            raise _malformed("options.chord", "a chord (id, body, size)", chord)
    index = options.get("group_index")
    if index is not None:
        _integer("options.group_index", index, low=0)
    for name in ("argsrepr", "kwargsrepr"):
        value = options.get(name)
        if value is not None and not isinstance(value, str):
            raise _malformed(f"options.{name}", "text", value)


def stored_envelope(
    task_id: Any, task_name: Any, queue: Any, priority: Any, eta: Any, expires: Any,
    acks_late: Any, content_type: Any, header: Any, body: Any, flow: Any = None,
) -> Envelope:
    """An envelope from stored columns as a transport reads them back, whatever another
    writer left there: a column of the wrong type becomes the envelope's ``defect``
    (the worker fails the message with it) instead of an exception in the claim."""
    defects: list[str] = []
    return Envelope(
        task_id=_column_text("task_id", task_id, defects),
        task_name=_column_text("task_name", task_name, defects),
        queue=_column_text("queue", queue, defects),
        priority=_column_priority(priority, defects),
        eta=_column_number("eta", eta, defects),
        expires=_column_number("expires", expires, defects),
        acks_late=bool(acks_late),
        content_type=_column_text("content_type", content_type, defects),
        header=_column_bytes(header), body=_column_bytes(body),
        flow=_column_flow(flow, defects), defect="; ".join(defects) or None,
    )


def _column_defect(name: str, expected: str, value: Any) -> str:
    return (f"malformed message column {name!r}: expected {expected}, got "
            f"{type(value).__name__} {_short(value)}")


def _column_text(name: str, value: Any, defects: list[str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            defects.append(f"malformed message column {name!r}: not UTF-8 text")
            return bytes(value).decode(errors="replace")
    defects.append(_column_defect(name, "text", value))
    return "" if value is None else str(value)


def _column_number(name: str, value: Any, defects: list[str]) -> float | None:
    if value is None or value in (b"", ""):
        return None
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        parsed = math.nan
    if math.isfinite(parsed) and not isinstance(value, bool):
        return parsed
    defects.append(_column_defect(name, "a number", value))
    return None


def _column_priority(value: Any, defects: list[str]) -> int:
    rank = value
    if isinstance(rank, (bytes, str)):
        try:
            rank = int(rank)
        except ValueError:
            pass
    if type(rank) is not int or not -MAX_INT <= rank <= MAX_INT:
        defects.append(_column_defect("priority", "an integer", value))
        return 0
    return rank


def _column_flow(value: Any, defects: list[str]) -> Flow | None:
    try:
        return Flow.loads(value)
    except Exception:
        defects.append(_column_defect("flow", "flow control json", value))
        return None


def _column_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode(errors="replace")
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else b""


def describe_unserializable(
    message: Message, serializer: serialization.Serializer, error: Exception
) -> str:
    """Name the first argument of ``message`` that ``serializer`` cannot encode."""
    for index, value in enumerate(message.args):
        if not _encodes(serializer, value):
            return (
                f"cannot serialize argument {index} ({type(value).__name__}: {_short(value)}) "
                f"of task {message.task} with {serializer.name}: {error}"
            )
    kwargs: Mapping[Any, Any] = message.kwargs  # names may be anything at run time
    for name, value in kwargs.items():
        if not isinstance(name, str):
            return f"keyword argument names must be strings, got {name!r} for {message.task}"
        if not _encodes(serializer, value):
            return (
                f"cannot serialize keyword argument {name!r} ({type(value).__name__}: "
                f"{_short(value)}) of task {message.task} with {serializer.name}: {error}"
            )
    return f"cannot serialize the arguments of task {message.task}: {error}"


def _encodes(serializer: serialization.Serializer, value: Any) -> bool:
    try:
        serializer.dumps(value)
    except Exception:
        return False
    return True


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:
        text = object.__repr__(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def iso(timestamp: float | None) -> str | None:
    """Epoch seconds as a UTC ISO-8601 string (how Celery shows eta and expires)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


def new_id() -> str:
    """A new task id: a UUID (version 7) that sorts by creation time.

    Task ids key the results table; time-ordered ids land on the same few B-tree pages
    instead of random ones, which keeps each commit small. They are ordinary UUID
    strings, as Celery's are.
    """
    return new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    """``count`` new task ids (one call to the random source for all of them)."""
    stamp = f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}"
    head = f"{stamp[:8]}-{stamp[8:]}-7"
    rand = os.urandom(10 * count).hex()
    ids = []
    for start in range(0, 20 * count, 20):
        r = rand[start:start + 20]
        ids.append(f"{head}{r[:3]}-{'89ab'[int(r[3], 16) & 3]}{r[4:7]}-{r[7:19]}")
    return ids


def origin() -> str:
    """This process, as Celery names a message's origin: ``gen<pid>@<host>``."""
    return f"gen{os.getpid()}@{socket.gethostname()}"


__all__ = [
    "MAX_INT",
    "PROTOCOL_VERSION",
    "Envelope",
    "Flow",
    "Message",
    "iso",
    "new_id",
    "new_ids",
    "origin",
    "stored_envelope",
]
