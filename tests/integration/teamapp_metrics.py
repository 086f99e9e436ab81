"""A team's service inside the kit, as the metric tests serve it: its own prometheus-client
Counter, Histogram and Gauge, defined at module level and updated in a route.

    gunicorn -c gunicorn.conf.py tests.integration.teamapp_metrics:app

``TEAMAPP_ORDER`` picks the order a team might write its module in: ``team-first``
(default: the team's metrics are created, and the label-less ones open their files,
before ``create_app`` builds the kit's metrics) or ``kit-first`` (the app first, the
team's metrics after). Each response names the worker's pid, so a test knows which
worker served what (the team's live gauge is a per-worker quantity).
"""

from __future__ import annotations

import os

from fastapi import APIRouter
from prometheus_client import Counter, Gauge, Histogram

from app.platform.app_factory import create_app
from app.platform.logging import get_logger
from app.platform.settings import load_settings_or_exit

ORDER = os.environ.get("TEAMAPP_ORDER", "team-first")
ORDER_BUCKETS = (0.5, 1.0, 2.5, 10.0)


def _team_metrics() -> tuple[Counter, Histogram, Gauge]:
    orders = Counter("team_orders", "Orders taken, by kind.", ["kind"])
    # Label-less: prometheus-client opens its files when these are created.
    amounts = Histogram("team_order_amount", "Order amounts.", buckets=ORDER_BUCKETS)
    open_orders = Gauge(
        "team_open_orders", "Orders taken by the live workers.", multiprocess_mode="livesum"
    )
    return orders, amounts, open_orders


router = APIRouter(prefix="/team")


@router.post("/orders/{kind}")
async def take_order(kind: str, amount: float = 1.0) -> dict[str, object]:
    ORDERS.labels(kind).inc()
    AMOUNTS.observe(amount)
    OPEN_ORDERS.inc()
    return {"kind": kind, "pid": os.getpid()}


settings = load_settings_or_exit()
if ORDER == "team-first":
    ORDERS, AMOUNTS, OPEN_ORDERS = _team_metrics()
    app = create_app(settings, [router], title="team-metrics")
else:
    app = create_app(settings, [router], title="team-metrics")
    ORDERS, AMOUNTS, OPEN_ORDERS = _team_metrics()
get_logger("teamapp").info("team app imported", pid=os.getpid(), order=ORDER)
