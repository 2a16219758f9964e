"""Send 20 adds (routed to low-priority, limited to 10/s for all workers together)
and one mul (default queue); print the results and how long the adds took."""

import time

from tasks import add, app, mul

print("add goes to queue:", app.conf.task_routes["tasks.add"])
started = time.monotonic()
results = [add.delay(i, i) for i in range(20)]
print("adds:", [r.get(timeout=30) for r in results])
print(f"20 adds at 10/s took {time.monotonic() - started:.1f}s")
print("mul:", mul.delay(6, 7).get(timeout=10))
