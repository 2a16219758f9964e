"""Producer-side code for each system, run as a subprocess in that system's venv.

``driver.py`` speaks JSON lines with the harness; ``*_adapter.py`` wrap one system's
public API (``delay()``, bulk send, ``get()``) and a cheap look at its result store.
"""
