"""Start a worker on tasks.db, send a few tasks, print their results, stop the worker.

Run from anywhere: ``python examples/quickstart/run.py``. What it does by hand:

    cd examples/quickstart
    liteq worker tasks.db &
    python -c "from tasks import add; print(add.delay(4, 4).get(timeout=10))"
"""

import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
os.chdir(HERE)
sys.path.insert(0, HERE)

from tasks import add, word_count  # noqa: E402  (after chdir: tasks.db is relative)

worker = subprocess.Popen([sys.executable, "-m", "liteq", "worker", "tasks.db", "-c", "2"])
try:
    started = time.monotonic()
    results = [add.delay(i, i) for i in range(5)]
    results.append(word_count.delay("the quick brown fox"))
    for res in results:
        print(f"{res.name}[{res.id[-8:]}] -> {res.get(timeout=30)}", flush=True)
    print(f"{len(results)} tasks done in {time.monotonic() - started:.2f}s", flush=True)
finally:
    worker.send_signal(signal.SIGTERM)  # warm shutdown
    worker.wait(30)
