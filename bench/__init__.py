"""liteq's benchmark suite: liteq against Celery, Huey, potatoq and a raw SQLite floor.

Run ``python -m bench --help``. This package must import nothing outside the standard
library at import time: its ``drivers`` also run in the peers' virtual environment.
"""
