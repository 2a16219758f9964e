"""The chaos harness: liteq under hostile conditions, counted (``python -m bench.chaos``)."""
