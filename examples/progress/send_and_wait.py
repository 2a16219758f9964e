"""Send a batch of work and wait for it with a progress bar on the terminal.

    python send_and_wait.py [count]

The bar follows ``GroupResult.completed_count()``; ``join()`` then returns every value
in order. Run a worker first: ``liteq -A tasks worker``.
"""

import sys
import time

from liteq import group
from tasks import resize

WIDTH = 30


def bar(done, total):
    filled = WIDTH * done // total
    return f"[{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{total}"


def main(count):
    job = group(resize.s(f"photo{i}.jpg", 256) for i in range(count)).apply_async()
    shown = -1
    while not job.ready():
        done = job.completed_count()
        if done != shown:
            print("\r" + bar(done, count), end="", flush=True)
            shown = done
        time.sleep(0.1)
    print("\r" + bar(count, count))
    values = job.join(timeout=30)
    print(f"{len(values)} images resized, first {values[0]}, last {values[-1]}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
