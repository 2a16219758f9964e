"""Fan out 40 tasks to the three workers and print who did what."""

from collections import Counter

from liteq import group
from proj.tasks import crunch, report

results = group(crunch.s(n) for n in range(1000, 1040)).apply_async().get(timeout=60)
by_worker = Counter(r["worker"].partition("@")[0] for r in results)
print("total:", sum(r["sum"] for r in results))
print("workers used:", ", ".join(sorted(by_worker)))
print(report.delay(len(results)).get(timeout=30))
