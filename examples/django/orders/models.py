from __future__ import annotations

from django.db import models


class Order(models.Model):
    """An order: created by the view, fulfilled by a task."""

    NEW, FULFILLED = "new", "fulfilled"

    item = models.CharField(max_length=100)
    quantity = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=20, default=NEW)
    created_at = models.DateTimeField(auto_now_add=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    fulfilled_by = models.CharField(max_length=100, blank=True)
