"""``crm-stream serve``: a read-only HTTP API over the engine's Redis, and the support agent's page.

Routes (OpenAPI at ``/docs``): ``/v1/customers/{id}``, ``.../triggers``, ``.../recommendations``,
``/v1/products/{id}/recommendations``, ``/v1/triggers`` (a cursor over the stream),
``/agent/customers/{id}`` (HTML), and without a key ``/healthz``, ``/readyz``, ``/metrics``.
Every ``/v1`` and ``/agent`` request needs ``Authorization: Bearer KEY`` (a key of
``CRM_API__KEYS``; the agent's browser may send it as the ``crm_api_key`` cookie) or gets 401.
The access log names the route template, never the path: no customer or product id is logged.
"""

from __future__ import annotations

import hmac
import logging
import time
from pathlib import Path as FsPath
from typing import Any, Optional

import orjson
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict

from api import store
from api.agent import agent_view, short_time
from config.settings import Settings

access_log = logging.getLogger("crm.api.access")
# an id as the contract allows (1..128 characters), without control characters
ID = dict(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
COOKIE = "crm_api_key"
TRIGGER_TYPES = "^[a-z][a-z0-9_]{0,63}$"  # open: the contract's four, the catalogue's, a shop's own (schema_version 2)


class Profile(BaseModel):
    """The ``crm:customer:{id}`` hash (CONTRACT.md section 7); fields added later pass through."""
    model_config = ConfigDict(extra="allow")
    customer_id: str
    tier: Optional[str] = None
    lifetime_spend: Optional[float] = None
    order_count: Optional[int] = None
    predicted_clv: Optional[float] = None
    churn_probability: Optional[float] = None
    frustration_probability: Optional[float] = None
    open_orders: list[dict] = []
    cart: list[dict] = []
    cart_value: Optional[float] = None
    open_conversations: list[str] = []
    consent: Optional[Any] = None
    last_trigger: dict[str, Any] = {}
    last_suppressed: dict[str, Any] = {}
    first_seen: Optional[str] = None
    last_seen: Optional[str] = None
    updated_at: Optional[str] = None


class CustomerTriggers(BaseModel):
    customer_id: str
    triggers: list[dict]


class Recommendation(BaseModel):
    product_id: str
    score: Optional[float] = None


class Recommendations(BaseModel):
    recommendations: list[Recommendation]
    source: str


class StreamEntry(BaseModel):
    id: str
    trigger: dict


class TriggerPage(BaseModel):
    items: list[StreamEntry]
    next: str


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("crm_api_requests_total", "API requests by route template, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("crm_api_request_seconds", "API request latency by route template", ["route"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                                 registry=self.registry)


class _Observe:
    """Plain ASGI middleware (no per-request task, unlike ``@app.middleware``): counts and times
    each HTTP request by route template and writes the access log line without the path."""

    def __init__(self, app: Any, metrics: _Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # the template, never the path
            elapsed = time.perf_counter() - t0
            self.metrics.requests.labels(route, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            access_log.info("%s %s %d %.1fms", scope["method"], route, status[0], elapsed * 1000)


def create_app(settings: Settings, client: Any = None) -> FastAPI:
    """The ASGI app; ``client`` (a ``redis.asyncio`` client) defaults to ``settings.redis``."""
    app = FastAPI(title="crm-stream", version="1", description=__doc__)
    app.state.redis = client if client is not None else store.connect(settings.redis)
    metrics = _Metrics()
    app.state.metrics = metrics
    keys = [k.encode() for k in settings.api.keys]
    cap = settings.api.max_limit
    templates = Jinja2Templates(directory=str(FsPath(__file__).parent / "templates"))
    templates.env.filters["when"] = short_time

    if settings.api.cors_origins:  # off unless origins are configured
        app.add_middleware(CORSMiddleware, allow_origins=settings.api.cors_origins, allow_methods=["GET"],
                           allow_headers=["Authorization"])

    app.add_middleware(_Observe, metrics=metrics)

    def authorised(request: Request) -> None:
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else request.cookies.get(COOKIE, "")
        given_b = given.encode()
        if not given or not any(hmac.compare_digest(given_b, k) for k in keys):
            raise HTTPException(401, "a valid API key is required (Authorization: Bearer KEY)",
                                headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorised)]
    r = app.state.redis

    async def _profile(customer_id: str) -> dict:
        found = await store.profile(r, customer_id)
        if found is None:
            raise HTTPException(404, "unknown customer")
        return found

    @app.get("/v1/customers/{customer_id}", response_model=Profile, dependencies=auth, tags=["customers"])
    async def get_customer(customer_id: str = Path(**ID)):
        """The profile: 404 for an unknown or erased customer (no profile hash)."""
        found = await _profile(customer_id)
        found.setdefault("consent", None)
        found.setdefault("last_suppressed", {})
        # straight to JSON: the hot route skips FastAPI's response validation (about a third of its CPU)
        return Response(orjson.dumps(found), media_type="application/json")

    @app.get("/v1/customers/{customer_id}/triggers", response_model=CustomerTriggers, dependencies=auth,
             tags=["customers"])
    async def get_customer_triggers(customer_id: str = Path(**ID), limit: int = Query(20, ge=1, le=cap)):
        """The customer's newest triggers by event time, newest first (the sink keeps the newest
        ``CRM_REDIS__CUSTOMER_TRIGGERS``)."""
        await _profile(customer_id)
        return {"customer_id": customer_id, "triggers": await store.customer_triggers(r, customer_id, limit)}

    @app.get("/v1/customers/{customer_id}/recommendations", response_model=Recommendations, dependencies=auth,
             tags=["customers"])
    async def get_customer_recs(customer_id: str = Path(**ID), limit: int = Query(10, ge=1, le=cap)):
        """The profile's next-product list (``source: profile``); without one, what goes with the
        cart (``source: cart``); else empty (``source: none``)."""
        return await customer_recs(r, await _profile(customer_id), limit)

    @app.get("/v1/products/{product_id}/recommendations", response_model=Recommendations, dependencies=auth,
             tags=["products"])
    async def get_product_recs(product_id: str = Path(**ID), limit: int = Query(10, ge=1, le=cap)):
        """``crm:recs:{product_id}``, best first; empty for a product the engine has not seen."""
        return {"recommendations": await store.product_recs(r, product_id, limit), "source": "product"}

    @app.get("/v1/triggers", response_model=TriggerPage, dependencies=auth, tags=["triggers"])
    async def get_triggers(after: str = Query("0", pattern=store.STREAM_ID.pattern),
                           limit: int = Query(100, ge=1, le=cap),
                           type: Optional[str] = Query(None, pattern=TRIGGER_TYPES)):
        """Stream entries after the cursor ``after`` (``0``: the oldest kept), oldest first; pass
        ``next`` back as ``after`` to resume. Ids are the stream's: stable, each trigger once."""
        items, cursor = await store.trigger_page(r, settings.redis.stream, after, limit, type)
        return {"items": items, "next": cursor}

    @app.get("/agent/customers/{customer_id}", response_class=HTMLResponse, dependencies=auth, tags=["agent"])
    async def agent_page(request: Request, customer_id: str = Path(**ID)):
        """The support agent's page of one customer (server-rendered HTML); 404 when unknown or erased."""
        profile = await store.profile(r, customer_id)
        if profile is None:
            return templates.TemplateResponse(request, "missing.html", {}, status_code=404)
        triggers = await store.customer_triggers(r, customer_id, 20)
        recs = await customer_recs(r, profile, 5)
        return templates.TemplateResponse(request, "agent.html", agent_view(profile, triggers, recs["recommendations"]))

    @app.get("/healthz", tags=["ops"])
    async def healthz():
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz():
        """Redis answers (503 otherwise)."""
        if not await store.ready(r):
            raise HTTPException(503, "redis does not answer")
        return {"status": "ready"}

    @app.get("/metrics", response_class=PlainTextResponse, tags=["ops"])
    async def prometheus():
        """Prometheus text format: request counts and latency by route."""
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def customer_recs(r: Any, profile: dict, limit: int) -> dict:
    own = profile.get("recommendations")
    if isinstance(own, list) and own:
        return {"recommendations": [{"product_id": str(p)} for p in own[:limit]], "source": "profile"}
    cart = [str(i.get("product_id")) for i in profile.get("cart") or [] if isinstance(i, dict)]
    if cart:
        return {"recommendations": await store.cart_recs(r, cart, limit), "source": "cart"}
    return {"recommendations": [], "source": "none"}
