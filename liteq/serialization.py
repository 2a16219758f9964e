"""Serializers: json by default, pickle only when the user accepts it.

liteq's json round-trips what task arguments usually hold and plain json does not:
``datetime`` (aware ones keep their ``zoneinfo`` zone), ``date``, ``time``,
``timedelta``, ``UUID``, ``Decimal``, ``bytes``,
tuples, sets and dicts whose keys are not strings. They travel as small tagged objects
(``{"__type__": "uuid", "__value__": "..."}``), so the stored messages stay readable.
Anything else fails at ``delay()`` with :class:`~liteq.exceptions.EncodeError`.
"""

from __future__ import annotations

import base64
import json
import pickle
import uuid
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from liteq.exceptions import ContentDisallowed, DecodeError, EncodeError


@dataclass(frozen=True)
class Serializer:
    """A named way to turn Python values into bytes and back."""

    name: str
    content_type: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


# -- liteq json ----------------------------------------------------------------------

_TYPE, _VALUE = "__type__", "__value__"
_PLAIN = (str, int, float, bool, type(None))


def _to_json(obj: Any) -> Any:
    """Turn ``obj`` into json-native values, tagging the types json lacks."""
    kind = type(obj)
    if kind in _PLAIN:
        return obj
    if kind is list:
        return [_to_json(item) for item in obj]
    if kind is dict:
        if all(type(key) is str for key in obj) and _TYPE not in obj:
            return {key: _to_json(value) for key, value in obj.items()}
        return {_TYPE: "dict", _VALUE: [[_to_json(k), _to_json(v)] for k, v in obj.items()]}
    encode = _ENCODERS.get(kind)
    if encode is None:
        for base, candidate in _ENCODERS.items():
            if isinstance(obj, base):
                encode = candidate
                break
        else:
            if isinstance(obj, (str, int, float)):  # str/int/float subclasses, IntEnum...
                return obj
            raise TypeError(f"Object of type {kind.__name__} is not JSON serializable")
    return encode(obj)


def _tag(name: str, value: Any) -> dict[str, Any]:
    return {_TYPE: name, _VALUE: value}


def _encode_datetime(value: datetime) -> dict[str, Any]:
    # A datetime in a named zone keeps its zone (and fold): an offset alone would turn
    # 02:30 on a DST day in Europe/Berlin into another instant or another zone.
    zone = value.tzinfo
    if isinstance(zone, zoneinfo.ZoneInfo) and zone.key is not None:
        naive = value.replace(tzinfo=None, fold=0).isoformat()
        return _tag("zoned_datetime", [naive, zone.key, value.fold])
    return _tag("datetime", value.isoformat())


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    # datetime before date: datetime is a subclass of date.
    datetime: lambda v: _encode_datetime(v),
    date: lambda v: _tag("date", v.isoformat()),
    time: lambda v: _tag("time", v.isoformat()),
    timedelta: lambda v: _tag("timedelta", [v.days, v.seconds, v.microseconds]),
    uuid.UUID: lambda v: _tag("uuid", str(v)),
    Decimal: lambda v: _tag("decimal", str(v)),
    bytes: lambda v: _tag("bytes", base64.b64encode(v).decode("ascii")),
    bytearray: lambda v: _tag("bytearray", base64.b64encode(bytes(v)).decode("ascii")),
    tuple: lambda v: _tag("tuple", [_to_json(item) for item in v]),
    list: lambda v: [_to_json(item) for item in v],
    dict: lambda v: _to_json(dict(v)),
    set: lambda v: _tag("set", [_to_json(item) for item in v]),
    frozenset: lambda v: _tag("frozenset", [_to_json(item) for item in v]),
}

_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.fromisoformat,
    "zoned_datetime": lambda v: datetime.fromisoformat(v[0]).replace(
        tzinfo=zoneinfo.ZoneInfo(v[1]), fold=v[2]),
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "timedelta": lambda v: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": uuid.UUID,
    "decimal": Decimal,
    "bytes": lambda v: base64.b64decode(v),
    "bytearray": lambda v: bytearray(base64.b64decode(v)),
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "dict": lambda pairs: {key: value for key, value in pairs},
}


def _object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and _TYPE in obj and _VALUE in obj:
        decode = _DECODERS.get(obj[_TYPE])
        if decode is None:
            raise DecodeError(f"unknown json type tag {obj[_TYPE]!r}")
        return decode(obj[_VALUE])
    return obj


_json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_json_decoder = json.JSONDecoder(object_hook=_object_hook)


def _unencodable(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _make_fast_encoder() -> Callable[[Any], str]:
    """The C json encoder, made once (``JSONEncoder.encode`` makes one per call)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - Python built without the _json accelerator
        return _json_encoder.encode
    encoder = make(None, _unencodable, json.encoder.encode_basestring, None, ":", ",",
                   False, False, True)
    return lambda obj: "".join(encoder(obj, 0))


_encode_plain = _make_fast_encoder()


def _plain(obj: Any, depth: int) -> bool:
    """True when plain json encodes ``obj`` exactly: no tuples, tagged types or
    non-string keys, within ``depth`` levels (the common case, checked cheaply)."""
    kind = type(obj)
    if kind in _PLAIN:
        return True
    if depth == 0:
        return False
    if kind is list:
        return all(_plain(item, depth - 1) for item in obj)
    if kind is dict:
        return _TYPE not in obj and all(
            type(key) is str and _plain(value, depth - 1) for key, value in obj.items()
        )
    return False


def json_dumps(obj: Any) -> bytes:
    """liteq's json encoding of ``obj`` (see the module docstring for the extra types)."""
    if _plain(obj, 3):
        return _encode_plain(obj).encode("utf-8")
    return _encode_plain(_to_json(obj)).encode("utf-8")


def plain_json_dumps(obj: Any) -> bytes:
    """Encode ``obj`` that the caller knows holds only plain json values."""
    return _encode_plain(obj).encode("utf-8")


def dumps_call(serializer: Serializer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """A message body, ``[args, kwargs]``; plain arguments skip the tagging walk."""
    if serializer is JSON and _flat(args, kwargs):
        return _encode_plain([list(args), kwargs]).encode("utf-8")
    return serializer.dumps([list(args), dict(kwargs)])


def _flat(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    for arg in args:
        if type(arg) not in _PLAIN:
            return False
    for key, value in kwargs.items():
        if type(key) is not str or type(value) not in _PLAIN:
            return False
    return True


def json_loads(data: bytes | str) -> Any:
    """Decode what :func:`json_dumps` made."""
    if not isinstance(data, str):
        data = bytes(data).decode("utf-8")
    return _json_decoder.decode(data)


def _pickle_dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _pickle_loads(data: bytes) -> Any:
    return pickle.loads(data)  # only reached when the user put pickle in accept_content


JSON = Serializer("json", "application/json", json_dumps, json_loads)
PICKLE = Serializer("pickle", "application/x-python-serialize", _pickle_dumps, _pickle_loads)

_registry: dict[str, Serializer] = {}


def register(serializer: Serializer) -> None:
    """Make a serializer available by its name and its content type.

    Example:
        >>> import msgpack  # doctest: +SKIP
        >>> register(Serializer("msgpack", "application/x-msgpack",
        ...                     msgpack.packb, msgpack.unpackb))  # doctest: +SKIP
    """
    _registry[serializer.name] = serializer
    _registry[serializer.content_type] = serializer


register(JSON)
register(PICKLE)


def get(name: str) -> Serializer:
    """The serializer registered under ``name`` (a name or a content type)."""
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(s for s in _registry if "/" not in s))
        raise EncodeError(f"unknown serializer {name!r} (known: {known})") from None


def accepted_content_types(accept: Iterable[str]) -> frozenset[str]:
    """Content types allowed by an ``accept_content`` list of names or content types."""
    types = set()
    for entry in accept:
        serializer = _registry.get(entry)
        types.add(serializer.content_type if serializer else entry)
    return frozenset(types)


def describe(content_type: str, quoted: bool = True) -> str:
    """A content type as a user knows it: ``'pickle' (application/x-python-serialize)``
    (``quoted=False``: just the serializer's name, ``pickle``).

    Example:
        >>> describe("application/json")
        "'json' (application/json)"
    """
    serializer = _registry.get(content_type)
    if serializer is None:
        return repr(content_type) if quoted else content_type
    return f"{serializer.name!r} ({content_type})" if quoted else serializer.name


def loads(data: bytes, content_type: str, accept: frozenset[str],
          setting: str = "accept_content") -> Any:
    """Decode ``data``, refusing content types outside ``accept`` (named ``setting``
    in the error, which names the serializer: ``refusing to deserialize 'pickle'
    (application/x-python-serialize): not in accept_content ['json']``).

    Raises:
        ContentDisallowed: ``content_type`` is not accepted.
        DecodeError: the data is not valid for its content type.
    """
    if content_type not in accept:
        raise ContentDisallowed(
            f"refusing to deserialize {describe(content_type)}: not in {setting} "
            f"{sorted(describe(accepted, quoted=False) for accepted in accept)}"
        )
    serializer = _registry.get(content_type)
    if serializer is None:
        raise DecodeError(f"no serializer for content type {content_type!r}")
    try:
        return serializer.loads(data)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"cannot decode {serializer.name} content: {exc}") from exc


__all__ = [
    "JSON",
    "PICKLE",
    "Serializer",
    "accepted_content_types",
    "describe",
    "dumps_call",
    "get",
    "json_dumps",
    "json_loads",
    "loads",
    "plain_json_dumps",
    "register",
]
