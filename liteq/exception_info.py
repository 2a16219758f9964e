"""How an exception travels in a result: what is stored of it (its type's module and
name, and its arguments) and how it is raised again where the result is read, with its
own type when that type can be imported there, else a stand-in of the same name.
"""

from __future__ import annotations

import builtins
import importlib
import re
import sys
from typing import Any

from liteq import exceptions, serialization

_IDENTIFIER = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def exception_info(exc: BaseException) -> dict[str, Any]:
    """What is stored of an exception: its type's module and name, and its arguments."""
    # An exception that keeps its text outside ``args`` (pydantic's ValidationError)
    # keeps it here as its one argument.
    args = exc.args or ((str(exc),) if str(exc) else ())
    return {
        "exc_type": type(exc).__qualname__,
        "exc_module": type(exc).__module__,
        "exc_message": [_storable(arg) for arg in args],
    }


def _storable(value: Any) -> Any:
    try:
        serialization.json_dumps(value)
    except Exception:
        return repr(value)
    return value


def _exception_class(module: str, qualname: str) -> type[BaseException] | None:
    if not _IDENTIFIER.match(module) or not _IDENTIFIER.match(qualname):
        return None
    if module == "builtins":
        candidate: Any = getattr(builtins, qualname, None)
    else:
        owner = sys.modules.get(module)
        if owner is None:
            try:
                owner = importlib.import_module(module)
            except Exception:
                return None
        candidate = owner
        for part in qualname.split("."):
            candidate = getattr(candidate, part, None)
    if isinstance(candidate, type) and issubclass(candidate, BaseException):
        return candidate
    return None


_synthetic: dict[tuple[str, str], type[Exception]] = {}


def rebuild_exception(info: Any) -> BaseException:
    """The exception described by :func:`exception_info`, as faithfully as possible.

    The original type is used when it can be imported and is an exception class; else a
    stand-in class with the same name and module (deriving from ``Exception``).
    """
    if not isinstance(info, dict):
        return exceptions.TaskError(f"unreadable exception: {info!r}")
    module = str(info.get("exc_module") or "builtins")
    qualname = str(info.get("exc_type") or "Exception")
    args = info.get("exc_message") or []
    if not isinstance(args, (list, tuple)):
        args = [args]
    cls = _exception_class(module, qualname) or _stand_in(module, qualname)
    try:
        exc = cls(*args)
    except Exception:
        try:
            exc = cls.__new__(cls)
        except Exception:  # built only by its library (pydantic's ValidationError)
            exc = _stand_in(module, qualname).__new__(_stand_in(module, qualname))
        exc.args = tuple(args)
    return exc


def _stand_in(module: str, qualname: str) -> type[Exception]:
    """An exception class with the name and module of one that cannot be rebuilt."""
    key = (module, qualname)
    if key not in _synthetic:
        name = qualname.rpartition(".")[2] if _IDENTIFIER.match(qualname) else "RemoteError"
        _synthetic[key] = type(name, (Exception,), {"__module__": module})
    return _synthetic[key]


__all__ = ["exception_info", "rebuild_exception"]
