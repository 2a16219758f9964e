"""The app of a project: settings from ``proj/settings.py``, tasks found in
``proj/tasks.py`` (seed 004's ``local/celery.py`` without Django)."""

from liteq import Celery, platforms

platforms.C_FORCE_ROOT = True  # accepted (liteq needs no permission to run as root)

app = Celery("proj")
app.config_from_object("proj.settings")
app.autodiscover_tasks(["proj"])
