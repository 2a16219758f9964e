from __future__ import annotations

from demoapp.models import Widget
from liteq import shared_task  # the one changed import


@shared_task
def add(x, y):
    return x + y


@shared_task
def mul(x, y):
    return x * y


@shared_task
def xsum(numbers):
    return sum(numbers)


@shared_task
def count_widgets():
    return Widget.objects.count()


@shared_task
def rename_widget(widget_id, name):
    widget = Widget.objects.get(id=widget_id)
    widget.name = name
    widget.save()
