"""Tasks that read and write orders."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from liteq import shared_task
from orders.models import Order


@shared_task(bind=True)
def fulfil_order(self, order_id):
    """Mark one order fulfilled (the view sends this when its transaction commits)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(id=order_id)
        if order.status == Order.NEW:
            order.status = Order.FULFILLED
            order.fulfilled_at = timezone.now()
            order.fulfilled_by = self.request.id
            order.save()
    return order.status


@shared_task
def fulfil_waiting_orders():
    """Periodic: send fulfil_order for every order still new (a safety net)."""
    waiting = list(Order.objects.filter(status=Order.NEW).values_list("id", flat=True))
    for order_id in waiting:
        fulfil_order.delay(order_id)
    return len(waiting)
