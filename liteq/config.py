"""Settings: one table of defaults, Celery's old upper-case names, and ``app.conf``.

Every setting liteq reads is listed once in :data:`OPTIONS` with its default. Celery's
old names (``BROKER_URL``, ``CELERY_RESULT_BACKEND``, ``CELERYD_MAX_TASKS_PER_CHILD``,
...) are aliases that read and write the same value. An unknown name still works as a
plain value but warns, naming the nearest known setting.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from liteq.exceptions import ImproperlyConfigured

T = TypeVar("T")


class UnknownSettingWarning(UserWarning):
    """A setting name that liteq does not know (often a typo)."""


class UnsupportedSettingWarning(UserWarning):
    """A Celery setting that liteq accepts but cannot honour."""


@dataclass(frozen=True)
class Option:
    """One setting: its default, its old Celery names, and what it means here."""

    default: Any = None
    old: tuple[str, ...] = ()
    #: True when the setting only makes sense for a network broker: accepted, no effect.
    noop: bool = False
    doc: str = ""
    type: type | tuple[type, ...] | None = None


def _o(default: Any = None, *old: str, noop: bool = False, doc: str = "",
       type: Any = None) -> Option:
    return Option(default, tuple(old), noop, doc, type)


_PUBLISH_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 1,
}

#: Every setting liteq knows, with its default and the old upper-case names.
OPTIONS: dict[str, Option] = {
    # -- broker and results ----------------------------------------------------------
    "broker_url": _o(None, "BROKER_URL", doc="sqlite:///path.db, a plain path, or redis://"),
    "result_backend": _o(None, "CELERY_RESULT_BACKEND",
                         doc="the broker's store when unset (also rpc://, and django-db or "
                             "django-cache with a warning); sqlite:///, db+sqlite:/// or "
                             "redis:// name another (see result_store)"),
    "broker_transport_options": _o({}, "BROKER_TRANSPORT_OPTIONS", type=dict,
                                   doc="visibility_timeout (lease seconds, default 60)"),
    "result_backend_transport_options": _o({}, type=dict),
    "broker_connection_retry": _o(True, "BROKER_CONNECTION_RETRY"),
    "broker_connection_retry_on_startup": _o(True),
    "broker_connection_max_retries": _o(100, "BROKER_CONNECTION_MAX_RETRIES"),
    "broker_connection_timeout": _o(4.0, "BROKER_CONNECTION_TIMEOUT"),
    "broker_pool_limit": _o(10, "BROKER_POOL_LIMIT", noop=True),
    "broker_heartbeat": _o(120, "BROKER_HEARTBEAT", noop=True),
    "broker_heartbeat_checkrate": _o(3.0, "BROKER_HEARTBEAT_CHECKRATE", noop=True),
    "broker_use_ssl": _o(False, "BROKER_USE_SSL"),
    "broker_login_method": _o(None, "BROKER_LOGIN_METHOD", noop=True),
    "broker_failover_strategy": _o(None, "BROKER_FAILOVER_STRATEGY", noop=True),
    "broker_channel_error_retry": _o(False, noop=True),
    "result_expires": _o(timedelta(days=1), "CELERY_TASK_RESULT_EXPIRES"),
    "result_serializer": _o("json", "CELERY_RESULT_SERIALIZER"),
    "result_accept_content": _o(None, "CELERY_RESULT_ACCEPT_CONTENT"),
    "result_extended": _o(False, "CELERY_RESULT_EXTENDED"),
    "console_hidden_tasks": _o((), doc="task name globs the console hides arguments of"),
    "result_cache_max": _o(-1, "CELERY_MAX_CACHED_RESULTS", noop=True),
    "result_persistent": _o(None, "CELERY_RESULT_PERSISTENT", noop=True),
    "result_exchange": _o("celeryresults", "CELERY_RESULT_EXCHANGE", noop=True),
    "result_exchange_type": _o("direct", "CELERY_RESULT_EXCHANGE_TYPE", noop=True),
    "result_compression": _o(None, "CELERY_RESULT_COMPRESSION", noop=True),
    "redis_max_connections": _o(None, "CELERY_REDIS_MAX_CONNECTIONS"),
    "redis_socket_timeout": _o(120.0, "CELERY_REDIS_SOCKET_TIMEOUT"),
    "redis_socket_connect_timeout": _o(None, "CELERY_REDIS_SOCKET_CONNECT_TIMEOUT"),
    "redis_retry_on_timeout": _o(False, "CELERY_REDIS_RETRY_ON_TIMEOUT"),
    "redis_socket_keepalive": _o(False, "CELERY_REDIS_SOCKET_KEEPALIVE"),
    "redis_backend_use_ssl": _o(None, "CELERY_REDIS_BACKEND_USE_SSL"),
    # -- liteq's SQLite storage ------------------------------------------------------
    "sqlite_synchronous": _o("NORMAL", "LITEQ_SQLITE_SYNCHRONOUS",
                             doc="NORMAL (fast, durable across process crashes) or FULL"),
    "sqlite_busy_timeout": _o(10.0, "LITEQ_SQLITE_BUSY_TIMEOUT",
                              doc="seconds a write waits for the lock before OperationalError"),
    # -- content ---------------------------------------------------------------------
    "accept_content": _o(("json",), "CELERY_ACCEPT_CONTENT"),
    "task_serializer": _o("json", "CELERY_TASK_SERIALIZER"),
    "timezone": _o(None, "CELERY_TIMEZONE"),
    "enable_utc": _o(True, "CELERY_ENABLE_UTC", "ENABLE_UTC"),
    "imports": _o((), "CELERY_IMPORTS"),
    "include": _o((), "CELERY_INCLUDE"),
    # -- tasks -----------------------------------------------------------------------
    "task_default_queue": _o("celery", "CELERY_DEFAULT_QUEUE"),
    "task_default_exchange": _o(None, "CELERY_DEFAULT_EXCHANGE"),
    "task_default_exchange_type": _o("direct", "CELERY_DEFAULT_EXCHANGE_TYPE"),
    "task_default_routing_key": _o(None, "CELERY_DEFAULT_ROUTING_KEY"),
    "task_default_priority": _o(None, "CELERY_DEFAULT_PRIORITY"),
    "task_default_delivery_mode": _o(2, "CELERY_DEFAULT_DELIVERY_MODE"),
    "task_default_rate_limit": _o(None, "CELERY_DEFAULT_RATE_LIMIT"),
    "task_queues": _o(None, "CELERY_QUEUES"),
    "task_routes": _o(None, "CELERY_ROUTES"),
    "task_create_missing_queues": _o(True, "CELERY_CREATE_MISSING_QUEUES"),
    "task_queue_max_priority": _o(None, "CELERY_QUEUE_MAX_PRIORITY"),
    "task_inherit_parent_priority": _o(False, "CELERY_INHERIT_PARENT_PRIORITY"),
    "task_annotations": _o(None, "CELERY_ANNOTATIONS"),
    "task_acks_late": _o(False, "CELERY_ACKS_LATE"),
    "task_acks_on_failure_or_timeout": _o(True, "CELERY_ACKS_ON_FAILURE_OR_TIMEOUT"),
    "task_reject_on_worker_lost": _o(None, "CELERY_REJECT_ON_WORKER_LOST"),
    "task_max_deliveries": _o(5, "LITEQ_TASK_MAX_DELIVERIES",
                              doc="deliveries after which a task that keeps killing its "
                                  "worker is recorded as FAILURE"),
    "task_always_eager": _o(False, "CELERY_ALWAYS_EAGER"),
    "task_eager_propagates": _o(False, "CELERY_EAGER_PROPAGATES_EXCEPTIONS"),
    "task_store_eager_result": _o(False, "CELERY_STORE_EAGER_RESULT"),
    "task_ignore_result": _o(False, "CELERY_IGNORE_RESULT"),
    "task_store_errors_even_if_ignored": _o(False, "CELERY_STORE_ERRORS_EVEN_IF_IGNORED"),
    "task_track_started": _o(False, "CELERY_TRACK_STARTED"),
    "task_time_limit": _o(None, "CELERYD_TASK_TIME_LIMIT"),
    "task_soft_time_limit": _o(None, "CELERYD_TASK_SOFT_TIME_LIMIT"),
    "task_publish_retry": _o(True, "CELERY_TASK_PUBLISH_RETRY"),
    "task_publish_retry_policy": _o(_PUBLISH_RETRY_POLICY, "CELERY_TASK_PUBLISH_RETRY_POLICY"),
    "task_protocol": _o(2, "CELERY_TASK_PROTOCOL", noop=True),
    "task_compression": _o(None, "CELERY_MESSAGE_COMPRESSION", noop=True),
    "task_send_sent_event": _o(False, "CELERY_SEND_TASK_SENT_EVENT", noop=True),
    "task_remote_tracebacks": _o(False, "CELERY_REMOTE_TRACEBACKS", noop=True),
    # -- worker ----------------------------------------------------------------------
    "worker_concurrency": _o(None, "CELERYD_CONCURRENCY"),
    "worker_pool": _o("prefork", "CELERYD_POOL"),
    "worker_pool_start_method": _o(None, "CELERYD_POOL_START_METHOD",
                                   doc="fork, forkserver or spawn (default: Python's)"),
    "worker_prefetch_multiplier": _o(16, "CELERYD_PREFETCH_MULTIPLIER",
                                     doc="most tasks a pool process claims ahead (Celery: "
                                         "4); fewer when tasks take long"),
    "worker_max_tasks_per_child": _o(None, "CELERYD_MAX_TASKS_PER_CHILD"),
    "worker_max_memory_per_child": _o(None, "CELERYD_MAX_MEMORY_PER_CHILD"),
    "worker_disable_rate_limits": _o(False, "CELERY_DISABLE_RATE_LIMITS"),
    "worker_hijack_root_logger": _o(True, "CELERYD_HIJACK_ROOT_LOGGER"),
    "worker_log_format": _o("[%(asctime)s: %(levelname)s/%(processName)s] %(message)s",
                            "CELERYD_LOG_FORMAT"),
    "worker_task_log_format": _o(
        "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s",
        "CELERYD_TASK_LOG_FORMAT"),
    "worker_log_color": _o(None, "CELERYD_LOG_COLOR"),
    "worker_redirect_stdouts": _o(True, "CELERY_REDIRECT_STDOUTS",
                                  doc="print() in tasks is logged (to stderr or -f)"),
    "worker_redirect_stdouts_level": _o("WARNING", "CELERY_REDIRECT_STDOUTS_LEVEL",
                                        doc="the level print() in tasks is logged at"),
    "worker_lost_wait": _o(10.0, "CELERYD_WORKER_LOST_WAIT"),
    "worker_proc_alive_timeout": _o(4.0, "CELERYD_PROC_ALIVE_TIMEOUT"),
    "worker_heartbeat_interval": _o(None, "LITEQ_WORKER_HEARTBEAT_INTERVAL",
                                    doc="seconds between heartbeats (default: lease / 6, "
                                        "at most 10)"),
    "worker_send_task_events": _o(False, "CELERY_SEND_EVENTS", noop=True),
    "worker_enable_remote_control": _o(True, "CELERY_ENABLE_REMOTE_CONTROL"),
    "worker_direct": _o(False, "CELERY_WORKER_DIRECT", noop=True),
    "worker_timer_precision": _o(1.0, "CELERYD_TIMER_PRECISION", noop=True),
    "worker_state_db": _o(None, "CELERYD_STATE_DB", noop=True),
    "worker_cancel_long_running_tasks_on_connection_loss": _o(False, noop=True),
    "worker_soft_shutdown_timeout": _o(0.0),
    "worker_import_allowlist": _o(None, doc="modules (packages: with their submodules) a "
                                            "worker may import to find a task a message "
                                            "names; None: task modules in its directory; "
                                            "'*': any"),
    # -- beat ------------------------------------------------------------------------
    "beat_schedule": _o({}, "CELERYBEAT_SCHEDULE"),
    "beat_max_loop_interval": _o(0, "CELERYBEAT_MAX_LOOP_INTERVAL"),
    "beat_scheduler": _o(None, "CELERYBEAT_SCHEDULER",
                         doc="Celery's own schedulers are accepted (liteq's beat is the "
                             "persistent one); any other, such as django_celery_beat's "
                             "DatabaseScheduler, stops beat with ImproperlyConfigured"),
    "beat_schedule_filename": _o(None, "CELERYBEAT_SCHEDULE_FILENAME", noop=True),
    "beat_sync_every": _o(0, "CELERYBEAT_SYNC_EVERY", noop=True),
    "beat_cron_starting_deadline": _o(None),
    "beat_missed_policy": _o("once", "LITEQ_BEAT_MISSED_POLICY",
                             doc="'once': fire a missed entry once on start; 'skip': don't"),
    # -- events and control (network-broker only) ------------------------------------
    "event_queue_ttl": _o(5.0, "CELERY_EVENT_QUEUE_TTL", noop=True),
    "event_queue_expires": _o(60.0, "CELERY_EVENT_QUEUE_EXPIRES", noop=True),
    "event_serializer": _o("json", "CELERY_EVENT_SERIALIZER", noop=True),
    "control_queue_ttl": _o(300.0, noop=True),
    "control_queue_expires": _o(10.0, noop=True),
}

#: Old (upper-case) name -> new name.
OLD_NAMES: dict[str, str] = {old: new for new, opt in OPTIONS.items() for old in opt.old}

#: Prefixes that mark an upper-case name as meant for a task queue.
_SETTING_PREFIXES = ("CELERY", "BROKER", "LITEQ")


def canonical_name(name: str) -> str | None:
    """The setting's lower-case name, or None when ``name`` is unknown."""
    if name in OPTIONS:
        return name
    if name in OLD_NAMES:
        return OLD_NAMES[name]
    lowered = name.lower()
    return lowered if lowered in OPTIONS else None


def nearest_name(name: str) -> str | None:
    """The known setting name closest to ``name`` (old names when ``name`` is upper-case)."""
    pool = list(OLD_NAMES) if name.isupper() else list(OPTIONS)
    match = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not match and name.isupper():
        match = difflib.get_close_matches(name.lower(), list(OPTIONS), n=1, cutoff=0.6)
    return match[0] if match else None


def _warn_unknown(name: str, stacklevel: int) -> None:
    hint = nearest_name(name)
    suggestion = f"; did you mean {hint!r}?" if hint else ""
    warnings.warn(
        f"unknown setting {name!r}{suggestion}",
        UnknownSettingWarning,
        stacklevel=stacklevel + 1,
    )


def seconds(value: Any, name: str) -> float | None:
    """A duration setting as seconds: accepts numbers, numeric strings and timedelta."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(
            f"setting {name!r} must be a number of seconds or a timedelta, not {value!r}"
        ) from None


#: ``result_backend`` values of django-celery-results: the broker's store, with a warning.
DJANGO_RESULT_BACKENDS = frozenset({"django-db", "django-cache"})

#: Celery's result backends (by alias or URL scheme) that liteq has not got.
UNAVAILABLE_RESULT_BACKENDS = frozenset({
    "amqp", "cache", "memcached", "pylibmc", "mongodb", "db", "database",
    "elasticsearch", "cassandra", "couchbase", "couchdb", "cosmosdbsql", "riak", "disabled",
    "consul", "dynamodb", "azureblockblob", "arangodb", "s3", "gcs", "gs",
})


def result_store(value: Any) -> str | None:
    """Where results go for a ``result_backend`` value: None for the broker's own store,
    else the URL of a store (``sqlite:///...``, a path, ``redis://...``).

    ``rpc://`` (results sent back to the caller) means the broker's store, as does
    django-celery-results' ``django-db``/``django-cache`` (with a warning: liteq keeps
    results in its store, not in Django's database or cache). SQLAlchemy's
    ``db+sqlite:///results.db`` is that SQLite file.

    Example:
        >>> result_store("rpc://") is None
        True
        >>> result_store("db+sqlite:///results.db")
        'sqlite:///results.db'

    Raises:
        ImproperlyConfigured: a result backend liteq has not got (``amqp://``,
            ``db+postgresql://``, ``cache+memcached://``, ``mongodb://``, ``disabled``...).
    """
    if value is None or value == "":
        return None
    text = str(value).strip()
    scheme, sep, rest = text.partition("://")
    name = (scheme if sep else text).lower()
    if name == "rpc":
        return None
    if name in DJANGO_RESULT_BACKENDS:
        warnings.warn(
            f"result_backend {text!r} (django-celery-results) is not available in liteq: "
            "results are stored with the broker's messages (liteq result, "
            "AsyncResult(id) read them there)",
            UnsupportedSettingWarning,
            stacklevel=3,
        )
        return None
    if name == "db+sqlite":
        return f"sqlite://{rest}"
    if not sep and name in ("redis", "rediss"):
        raise ImproperlyConfigured(
            f"result_backend {text!r} names no server: write a URL, redis://host:6379/0"
        )
    kind = name.partition("+")[0]
    if kind in UNAVAILABLE_RESULT_BACKENDS or name.startswith(("db+", "cache+")):
        hint = ("; to keep no results set task_ignore_result=True" if name == "disabled"
                else "")
        raise ImproperlyConfigured(
            f"result_backend {text!r} is not available in liteq: leave result_backend unset "
            "(or rpc://) to keep results with the broker, or name a SQLite file "
            f"(sqlite:///results.db) or a redis:// URL{hint}"
        )
    return text


class Settings(MutableMapping[str, Any]):
    """``app.conf``: attribute and item access, old names as aliases, ``update()``.

    Example:
        >>> conf = Settings()
        >>> conf.task_serializer
        'json'
        >>> conf.update(CELERY_TASK_SERIALIZER="json", result_expires=3600)
        >>> conf["result_expires"]
        3600
    """

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}
        #: bumped on every change, so cached derived values know to refresh
        self._generation = 0
        if values:
            self.update(values)

    # -- mapping protocol ------------------------------------------------------------

    def __getitem__(self, name: str) -> Any:
        key = canonical_name(name)
        if key is None:
            if name in self._extra:
                return self._extra[name]
            raise KeyError(name)
        if key in self._values:
            return self._values[key]
        return _copy_default(OPTIONS[key].default)

    def __setitem__(self, name: str, value: Any) -> None:
        self._set(name, value, stacklevel=3)

    def __delitem__(self, name: str) -> None:
        self._generation += 1
        key = canonical_name(name)
        if key is not None:
            self._values.pop(key, None)
        else:
            del self._extra[name]

    def __iter__(self) -> Iterator[str]:
        yield from OPTIONS
        yield from self._extra

    def __len__(self) -> int:
        return len(OPTIONS) + len(self._extra)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (canonical_name(name) is not None or name in self._extra)

    # -- attribute access ------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no setting named {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self._set(name, value, stacklevel=3)

    # -- updates ---------------------------------------------------------------------

    def _set(self, name: str, value: Any, stacklevel: int) -> None:
        self._generation += 1
        key = canonical_name(name)
        if key is None:
            _warn_unknown(name, stacklevel)
            self._extra[name] = value
            return
        self._values[key] = value

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        items = dict(other.items() if isinstance(other, Mapping) else other)
        items.update(kwargs)
        for name, value in items.items():
            self._set(name, value, stacklevel=3)

    def peek(self, name: str) -> Any:
        """A setting's value as set so far, without making pending settings configure
        (see :class:`PendingSettings`); the default when it is not set."""
        key = canonical_name(name)
        if key is None:
            return self._extra.get(name)
        if key in self._values:
            return self._values[key]
        return _copy_default(OPTIONS[key].default)

    def settle(self) -> None:
        """Nothing to do: these settings are configured (see :class:`PendingSettings`)."""

    def is_set(self, name: str) -> bool:
        """True when the user gave this setting a value (not just its default)."""
        key = canonical_name(name)
        return key in self._values if key is not None else name in self._extra

    def changes(self) -> dict[str, Any]:
        """The settings that differ from their defaults, by lower-case name."""
        return {**self._values, **self._extra}

    def from_object(self, obj: Any, namespace: str | None = None) -> None:
        """Read settings from a module, a class, an instance or a mapping.

        With ``namespace="CELERY"``, only names starting with ``CELERY_`` are read and the
        prefix is dropped (``CELERY_BROKER_URL`` -> ``broker_url``), as Django projects do.
        Without a namespace, names that are clearly not settings (functions, classes,
        modules, private names, foreign upper-case names like Django's ``DEBUG``) are skipped.
        """
        items = obj.items() if isinstance(obj, Mapping) else _public_attributes(obj)
        prefix = f"{namespace.rstrip('_')}_" if namespace else None
        for name, value in items:
            if prefix is not None:
                if not name.startswith(prefix):
                    continue
                name = name[len(prefix) :]
                self._set(_namespaced_name(name), value, stacklevel=3)
                continue
            if _is_setting_like(name, value):
                self._set(name, value, stacklevel=3)

    def humanize(self) -> str:
        """The changed settings, one per line, for ``liteq report``-style output."""
        return "\n".join(f"{key}: {value!r}" for key, value in sorted(self.changes().items()))


class SettingsCache:
    """Values computed from the settings, forgotten whenever the settings change.

    Example:
        >>> conf = Settings()
        >>> cache = SettingsCache(conf)
        >>> cache.get("serializer", lambda: conf.task_serializer)
        'json'
    """

    def __init__(self, conf: Settings) -> None:
        self.conf = conf
        self._values: dict[Any, Any] = {}
        self._generation = -1

    def get(self, key: Any, build: Callable[[], T]) -> T:
        """The cached value of ``key``, built (and kept) when missing or stale."""
        values = self._fresh()
        try:
            return values[key]  # type: ignore[no-any-return]
        except KeyError:
            value = values[key] = build()
            return value

    def set(self, key: Any, value: Any) -> None:
        """Keep ``value`` for ``key`` until the settings change."""
        self._fresh()[key] = value

    def _fresh(self) -> dict[Any, Any]:
        generation = self.conf._generation
        if generation != self._generation:
            self._values = {}
            self._generation = generation
        return self._values


class PendingSettings(Settings):
    """``app.conf`` before anything reads it, as Celery's pending configuration.

    Writes (``app.conf.x = ...``, ``update``, ``config_from_object``) are kept; the
    first read (an item, an attribute, iteration, ``changes()``...) calls ``configure``
    once, which sends the app's ``on_configure`` and ``on_after_configure``, and turns
    the object into a plain :class:`Settings`, so later reads cost nothing extra. A
    module that defines an app, its handlers and its tasks has finished before its
    settings are first read (by a send, a worker, beat or the user).
    """

    def __init__(self, configure: Callable[[], None]) -> None:
        super().__init__()
        self._configure: Callable[[], None] | None = configure

    def settle(self) -> None:
        """Become plain settings, then run ``configure`` (once)."""
        configure = self._configure
        self._configure = None
        self.__class__ = Settings  # type: ignore[assignment]
        if configure is not None:
            configure()

    def __getitem__(self, name: str) -> Any:
        self.settle()
        return Settings.__getitem__(self, name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        self.settle()
        return Settings.__getattr__(self, name)

    def __iter__(self) -> Iterator[str]:
        self.settle()
        return Settings.__iter__(self)

    def __contains__(self, name: object) -> bool:
        self.settle()
        return Settings.__contains__(self, name)

    def is_set(self, name: str) -> bool:
        self.settle()
        return Settings.is_set(self, name)

    def changes(self) -> dict[str, Any]:
        self.settle()
        return Settings.changes(self)


def _namespaced_name(name: str) -> str:
    # CELERY_TASK_ALWAYS_EAGER -> task_always_eager; CELERY_ACKS_LATE keeps its old meaning.
    if canonical_name(name.lower()) is not None:
        return name.lower()
    return name


def _copy_default(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def _public_attributes(obj: Any) -> Iterator[tuple[str, Any]]:
    for name in dir(obj):
        if name.startswith("_"):
            continue
        try:
            yield name, getattr(obj, name)
        except Exception:  # a lazy settings object may raise for unset names
            continue


def _is_setting_like(name: str, value: Any) -> bool:
    if inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value):
        return False
    if canonical_name(name) is not None:
        return True
    if name.isupper():
        return name.startswith(_SETTING_PREFIXES)
    return name.islower()


def load_object(path: str) -> Any:
    """Import ``"pkg.module"`` or ``"pkg.module:attr"`` (also ``"pkg.module.attr"``)."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if attr or "." not in module_name or exc.name != module_name:
            raise
        module_name, _, attr = module_name.rpartition(".")
        module = importlib.import_module(module_name)
    if not attr:
        return module
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


__all__ = [
    "DJANGO_RESULT_BACKENDS",
    "OLD_NAMES",
    "OPTIONS",
    "Option",
    "PendingSettings",
    "Settings",
    "SettingsCache",
    "UnknownSettingWarning",
    "UnsupportedSettingWarning",
    "canonical_name",
    "load_object",
    "nearest_name",
    "result_store",
    "seconds",
]
