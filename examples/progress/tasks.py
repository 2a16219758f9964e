"""Work a script sends out and waits for."""

import os
import time

from liteq import LiteQ

app = LiteQ("tasks", broker=os.environ.get("BROKER_URL", "sqlite:///tasks.db"))


@app.task
def resize(image, size):
    time.sleep(0.05)  # the real work would be here
    return f"{image}@{size}"
