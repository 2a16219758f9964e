"""The code under test: an app and its tasks, as in any project."""

import os

from liteq import LiteQ

app = LiteQ("shop", broker=os.environ.get("BROKER_URL", "sqlite:///shop.db"))


@app.task
def price(quantity, unit_price):
    if quantity < 0:
        raise ValueError(f"quantity must be positive, not {quantity}")
    return round(quantity * unit_price, 2)


@app.task
def total(prices):
    return round(sum(prices), 2)
