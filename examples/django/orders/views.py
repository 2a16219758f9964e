from __future__ import annotations

import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from orders.models import Order
from orders.tasks import fulfil_order


@csrf_exempt
@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    """POST {"item": "book", "quantity": 2}: store the order, fulfil it in the background."""
    try:
        data = json.loads(request.body or b"{}")
        item, quantity = str(data["item"]), int(data.get("quantity", 1))
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'send {"item": "...", "quantity": 1}'}, status=400)
    with transaction.atomic():
        order = Order.objects.create(item=item, quantity=quantity)
        # Sent when the transaction commits: a worker never sees an order that is not
        # there yet, and a rolled-back order sends nothing.
        result = fulfil_order.delay_on_commit(order.id)
    return JsonResponse({"id": order.id, "task_id": result.id}, status=201)


@require_GET
def order_status(request: HttpRequest, order_id: int) -> JsonResponse:
    order = get_object_or_404(Order, id=order_id)
    return JsonResponse({"id": order.id, "item": order.item, "status": order.status})
