from __future__ import annotations

from django.urls import path
from orders import views

urlpatterns = [
    path("orders/", views.create_order, name="create-order"),
    path("orders/<int:order_id>/", views.order_status, name="order-status"),
]
