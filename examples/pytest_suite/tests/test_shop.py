"""A CI test suite for shop.py, written as Celery's "Testing" guide writes it."""

import pytest

from liteq import chord
from liteq.contrib.testing.worker import start_worker
from shop import app, price, total


def test_price_called_directly():
    assert price(3, 1.5) == 4.5  # a plain call runs here, no worker


def test_with_celery_fixtures(celery_app, celery_worker):
    @celery_app.task
    def mul(x, y):
        return x * y

    celery_worker.reload()
    assert mul.delay(4, 4).get(timeout=10) == 16


def test_with_liteq_fixtures(liteq_app, liteq_worker):
    @liteq_app.task
    def shout(word):
        return word.upper()

    assert shout.delay("hi").get(timeout=10) == "HI"


@pytest.fixture
def shop_worker(tmp_path):
    """The project's own app on a temporary file, with a worker inside the test."""
    app.conf.broker_url = f"sqlite:///{tmp_path / 'shop.db'}"
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False):
        yield app


def test_the_project_tasks_on_a_real_worker(shop_worker):
    order = chord(price.s(q, 2.5) for q in (1, 2, 3))(total.s())
    assert order.get(timeout=20) == 15.0


def test_a_failure_reaches_the_caller(shop_worker):
    with pytest.raises(ValueError, match="quantity must be positive"):
        price.delay(-1, 2.0).get(timeout=10)
