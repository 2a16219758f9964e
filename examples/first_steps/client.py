"""Call the tasks as the tutorial does: delay, ready, get, propagate, traceback."""

from tasks import add, divide

res = add.delay(4, 4)
print("ready right away?", res.ready())
print("add(4, 4) =", res.get(timeout=10))
print("state:", res.state)

failed = divide.delay(1, 0)
error = failed.get(timeout=10, propagate=False)
print("divide(1, 0) raised", type(error).__name__)
print("traceback ends with:", failed.traceback.strip().splitlines()[-1])
