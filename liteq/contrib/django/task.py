"""``DjangoTask``: the task class of apps in a Django project (Celery 5.4's API).

Example:
    >>> from django.db import transaction  # doctest: +SKIP
    >>> with transaction.atomic():  # doctest: +SKIP
    ...     order = Order.objects.create(total=42)
    ...     ship.delay_on_commit(order.id)  # sent when the transaction commits
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction

from liteq.messages import new_id
from liteq.result import AsyncResult
from liteq.task import Task


class DjangoTask(Task[Any, Any]):
    """A task with ``delay_on_commit`` and ``apply_async_on_commit``.

    The fix-up makes it the app's default task class (``shared_task`` too), as Celery
    does, unless the app was created with its own ``task_cls``.
    """

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> AsyncResult[Any]:
        """``delay()`` when the current Django transaction commits (at once outside one).

        Returns:
            The task's result. If the transaction rolls back, the task is never sent
            and the result stays PENDING.
        """
        return self.apply_async_on_commit(args, kwargs)

    def apply_async_on_commit(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None, *, using: str | None = None, **options: Any,
    ) -> AsyncResult[Any]:
        """``apply_async()`` with these options when the transaction on the database
        ``using`` (default: Django's default) commits.

        Returns:
            The task's result (see :meth:`delay_on_commit`).
        """
        task_id = task_id or new_id()
        sent: list[AsyncResult[Any]] = []

        def send() -> None:
            sent.append(self.apply_async(args, kwargs, task_id=task_id, **options))

        transaction.on_commit(send, using=using)
        if sent:  # no transaction open: sent already (an EagerResult in eager mode)
            return sent[0]
        return AsyncResult(task_id, self.app, self.name)


__all__ = ["DjangoTask"]
