"""app.conf: attribute and item access, old names, unknown names, config_from_object."""

from __future__ import annotations

import types
import warnings
from datetime import timedelta

import pytest

from liteq import LiteQ
from liteq.config import OLD_NAMES, OPTIONS, Settings, UnknownSettingWarning


def test_defaults_attribute_and_item_access() -> None:
    conf = Settings()
    assert conf.task_serializer == conf["task_serializer"] == "json"
    assert conf.result_expires == timedelta(days=1)
    assert conf.accept_content == ("json",)
    conf.task_default_queue = "main"
    assert conf["task_default_queue"] == "main"
    conf["result_expires"] = 60
    assert conf.result_expires == 60
    assert "result_expires" in conf and "nonsense" not in conf
    assert conf.changes() == {"task_default_queue": "main", "result_expires": 60}


def test_old_upper_case_names_are_aliases() -> None:
    conf = Settings()
    conf.update(
        BROKER_URL="sqlite:///a.db",
        CELERY_RESULT_BACKEND="sqlite:///b.db",
        CELERY_TASK_SERIALIZER="json",
        CELERY_ACCEPT_CONTENT=["json"],
        CELERY_TASK_RESULT_EXPIRES=600,
        CELERYD_MAX_TASKS_PER_CHILD=100,
        CELERY_TIMEZONE="Asia/Shanghai",
        CELERY_ROUTES={"tasks.add": "low"},
        CELERY_ANNOTATIONS={"*": {"rate_limit": "10/s"}},
        BROKER_POOL_LIMIT=10,
    )
    assert conf.broker_url == "sqlite:///a.db"
    assert conf.result_backend == "sqlite:///b.db"
    assert conf.result_expires == 600
    assert conf.worker_max_tasks_per_child == 100
    assert conf.CELERYD_MAX_TASKS_PER_CHILD == 100
    assert conf.timezone == "Asia/Shanghai"
    assert conf.task_routes == {"tasks.add": "low"}
    assert conf.broker_pool_limit == 10  # accepted, a no-op


def test_every_old_name_maps_to_a_known_setting() -> None:
    assert all(new in OPTIONS for new in OLD_NAMES.values())
    assert "CELERYD_MAX_TASKS_PER_CHILD" in OLD_NAMES
    assert "CELERY_TASK_RESULT_EXPIRES" in OLD_NAMES


def test_unknown_names_warn_with_the_nearest_known_one() -> None:
    conf = Settings()
    with pytest.warns(UnknownSettingWarning, match="'task_serialiser'.*'task_serializer'"):
        conf.task_serialiser = "json"
    with pytest.warns(UnknownSettingWarning, match="'CELERY_QUEUE'.*'CELERY_QUEUES'"):
        conf.update(CELERY_QUEUE=())
    with pytest.warns(UnknownSettingWarning, match="unknown setting 'zzz'$"):
        conf["zzz"] = 1
    assert conf.zzz == 1  # kept, as a plain value


def test_unknown_keyword_to_the_app_warns() -> None:
    with pytest.warns(UnknownSettingWarning, match="'task_acks_lat'.*'task_acks_late'"):
        LiteQ("x", broker="x.db", task_acks_lat=True)


def test_config_from_object_module_with_helpers_and_django_settings() -> None:
    module = types.ModuleType("celeryconfig")
    exec(
        "from datetime import timedelta\n"
        "def my_on_failure(self, exc, task_id, args, kwargs, einfo): pass\n"
        "BROKER_URL = 'sqlite:///cfg.db'\n"
        "CELERY_ANNOTATIONS = {'*': {'on_failure': my_on_failure}}\n"
        "CELERY_TASK_RESULT_EXPIRES = 3600\n"
        "DEBUG = True\n"
        "INSTALLED_APPS = ['a']\n"
        "broker_pool_limit = 5\n",
        module.__dict__,
    )
    app = LiteQ("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.config_from_object(module)
    assert app.conf.broker_url == "sqlite:///cfg.db"
    assert app.conf.result_expires == 3600
    assert "*" in app.conf.task_annotations
    assert "DEBUG" not in app.conf.changes()


def test_config_from_object_with_namespace() -> None:
    class DjangoSettings:
        DEBUG = True
        CELERY_BROKER_URL = "sqlite:///dj.db"
        CELERY_TASK_ALWAYS_EAGER = True
        CELERY_RESULT_EXPIRES = 10

    app = LiteQ("x")
    app.config_from_object(DjangoSettings, namespace="CELERY")
    assert app.conf.broker_url == "sqlite:///dj.db"
    assert app.conf.task_always_eager is True
    assert app.conf.result_expires == 10


def test_config_from_object_by_import_path(tmp_path, monkeypatch) -> None:
    (tmp_path / "myconfig_x1.py").write_text("broker_url = 'sqlite:///p.db'\ntimezone = 'UTC'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = LiteQ("x")
    app.config_from_object("myconfig_x1")
    assert app.conf.broker_url == "sqlite:///p.db"
    with pytest.raises(ImportError):
        app.config_from_object("no_such_config_module")
    app.config_from_object("no_such_config_module", silent=True)


def test_visibility_timeout_and_result_expires_validation() -> None:
    app = LiteQ("x", broker="x.db", broker_transport_options={"visibility_timeout": 5},
                result_expires=timedelta(minutes=2))
    assert app.visibility_timeout == 5
    assert app.result_expires == 120
    app.conf.result_expires = "soon"
    from liteq import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="result_expires"):
        _ = app.result_expires
    app.conf.broker_transport_options = {"visibility_timeout": 0}
    with pytest.raises(ImproperlyConfigured, match="visibility_timeout"):
        _ = app.visibility_timeout


@pytest.mark.parametrize("value", [None, "", "rpc", "rpc://", "rpc://guest@localhost//"])
def test_result_backends_that_mean_the_brokers_store(value: object) -> None:
    from liteq.config import result_store

    assert result_store(value) is None


@pytest.mark.parametrize("value", ["django-db", "django-cache", "django-db://"])
def test_django_result_backends_mean_the_brokers_store_with_a_warning(value: str) -> None:
    from liteq.config import UnsupportedSettingWarning, result_store

    with pytest.warns(UnsupportedSettingWarning, match="django-celery-results"):
        assert result_store(value) is None


@pytest.mark.parametrize(("value", "url"), [
    ("sqlite:///results.db", "sqlite:///results.db"),
    ("results.db", "results.db"),
    ("db+sqlite:///results.sqlite", "sqlite:///results.sqlite"),
    ("redis://localhost:6379/1", "redis://localhost:6379/1"),
    ("rediss://localhost:6379/1", "rediss://localhost:6379/1"),
])
def test_result_backends_that_are_a_store(value: str, url: str) -> None:
    from liteq.config import result_store

    assert result_store(value) == url


@pytest.mark.parametrize("value", [
    "amqp://", "cache+memcached://127.0.0.1:11211/", "cache", "mongodb://localhost/db",
    "db+postgresql://u@h/db", "db+mysql://u@h/db", "database", "redis", "disabled",
    "elasticsearch://h:9200", "s3://bucket", "couchbase://h", "cassandra://h",
    "dynamodb://", "azureblockblob://x", "gs://bucket", "consul://h", "arangodb://h",
])
def test_result_backends_liteq_has_not_are_refused_by_name(value: str) -> None:
    from liteq.config import result_store
    from liteq.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="result_backend") as caught:
        result_store(value)
    assert repr(value) in str(caught.value)
    assert "\n" not in str(caught.value)
