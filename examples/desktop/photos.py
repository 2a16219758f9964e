"""A desktop app (Tkinter) with its task worker inside: no server, no second process.

    python photos.py               # the window: "Add 10 photos", a progress line, "Quit"
    python photos.py --headless --add 10 --quit-after 1   # the same without a display

The worker runs in a background thread of the app (``app.Worker(...).start()``).
Quitting stops it warm: running tasks finish, the rest stay queued in ``photos.db``
and run at the next start. Nothing is lost if the app crashes either: a task that was
running is run again (``acks_late``) once its lease runs out.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from liteq import LiteQ

try:  # the window is optional: --headless needs no display (and no Tk)
    import tkinter as tk
except ImportError:  # pragma: no cover - a Python built without Tk
    tk = None

HERE = Path(__file__).resolve().parent
app = LiteQ("photos", broker=os.environ.get("BROKER_URL", f"sqlite:///{HERE / 'photos.db'}"),
            broker_transport_options={"visibility_timeout": 10})
DONE = HERE / "done.txt"


@app.task(acks_late=True)
def make_thumbnail(name):
    time.sleep(0.2)  # the image work would be here
    with DONE.open("a") as out:
        out.write(name + "\n")
    return f"{name}.thumb.png"


class Photos:
    """What the window shows and does, without the window."""

    def __init__(self):
        self.worker = app.Worker(pool="threads", concurrency=2, hostname="photos@%h")

    def start(self):
        self.worker.start()

    def add(self, count):
        first = len(self.done()) + self.waiting()
        for i in range(first, first + count):
            make_thumbnail.delay(f"photo{i:03}")

    def waiting(self):
        return sum(depth.total for depth in app.broker.depth().values())

    def done(self):
        return DONE.read_text().split() if DONE.exists() else []

    def status(self):
        return f"{len(self.done())} thumbnails made, {self.waiting()} waiting"

    def quit(self):
        self.worker.stop(timeout=60)  # warm: running tasks finish, the rest stay queued


def run_window(photos):
    root = tk.Tk()
    root.title("Photos")
    line = tk.StringVar(value=photos.status())
    tk.Label(root, textvariable=line, width=40).pack(padx=10, pady=10)
    tk.Button(root, text="Add 10 photos", command=lambda: photos.add(10)).pack(pady=5)

    def refresh():
        line.set(photos.status())
        root.after(250, refresh)

    def quit_app():
        photos.quit()
        root.destroy()

    tk.Button(root, text="Quit", command=quit_app).pack(pady=5)
    root.protocol("WM_DELETE_WINDOW", quit_app)
    refresh()
    root.mainloop()


def run_headless(photos, add, quit_after):
    photos.add(add)
    deadline = time.monotonic() + quit_after if quit_after else None
    while photos.waiting() and (deadline is None or time.monotonic() < deadline):
        time.sleep(0.1)
    photos.quit()
    print(photos.status(), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headless", action="store_true", help="no window")
    parser.add_argument("--add", type=int, default=0, help="photos to add at start")
    parser.add_argument("--quit-after", type=float, default=0,
                        help="headless: quit after this many seconds (0: when all done)")
    args = parser.parse_args(argv)
    photos = Photos()
    photos.start()
    if args.headless or tk is None:
        run_headless(photos, args.add, args.quit_after)
    else:
        photos.add(args.add)
        run_window(photos)


if __name__ == "__main__":
    sys.exit(main())
