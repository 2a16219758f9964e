"""Send one task of each kind; each is run by the worker of its queue."""

from proj.images import thumbnail
from proj.tasks import add
from proj.videos import transcode

for result in (add.delay(2, 3), transcode.delay("holiday"), thumbnail.delay("cat")):
    done = result.get(timeout=20)
    print(f"{result.name:22} -> {done['value']!s:16} on {done['worker'].partition('@')[0]}")
