"""Rate limits through the HTTP API, on every backend (sqlite, postgres, scaled with Redis):
429 with a Retry-After header and the JSON error body, and the refusal counted in /metrics."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.datastructures import State
from litestar.testing import AsyncTestClient

from peakshop.app import create_app
from peakshop.config import Settings
from peakshop.runtime import Runtime
from tests.conftest import SERVICE
from tests.coupons.support import VALIDATE, Client, metric


async def post_validate(client: Client, user_id: str) -> Any:
    body = {"code": "NO-SUCH-CODE", "user_id": user_id, "order_total": "10.00"}
    return await client.post(VALIDATE, json=body, headers=SERVICE)


async def refused_count(client: Client, endpoint: str, scope: str) -> float:
    text = (await client.get("/metrics")).text
    return metric(text, "peakshop_rate_limited_total", endpoint=endpoint, scope=scope)


async def test_validation_past_the_user_limit_is_429_with_retry_after(settings: Settings) -> None:
    app = create_app(settings.replace(rate_limit_validate_per_user="3/second"))
    async with AsyncTestClient(app=app) as client:
        before = await refused_count(client, "validate", "user")
        for _ in range(3):
            response = await post_validate(client, "user_0000001")
            assert response.status_code == 200, response.text
            assert response.json()["reason"] == "not_found"
        response = await post_validate(client, "user_0000001")
        assert response.status_code == 429, response.text
        assert response.headers["retry-after"] == "1"
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["error"]["code"] == "rate_limited"
        assert "user" in body["error"]["message"]
        assert body["error"]["field"] is None
        assert body["retry_after"] == 1
        assert body["scope"] == "user"
        # Another user is not affected.
        assert (await post_validate(client, "user_0000002")).status_code == 200
        assert await refused_count(client, "validate", "user") == before + 1


async def test_validation_past_the_ip_limit_is_429_for_the_ip(settings: Settings) -> None:
    app = create_app(settings.replace(rate_limit_validate_per_ip="2/second"))
    async with AsyncTestClient(app=app) as client:
        before = await refused_count(client, "validate", "ip")
        assert (await post_validate(client, "user_0000001")).status_code == 200
        assert (await post_validate(client, "user_0000002")).status_code == 200
        response = await post_validate(client, "user_0000003")  # same client address
        assert response.status_code == 429, response.text
        assert response.json()["scope"] == "ip"
        assert "client IP" in response.json()["error"]["message"]
        assert response.headers["retry-after"] == "1"
        assert await refused_count(client, "validate", "ip") == before + 1


async def test_ordinary_handlers_get_the_header_from_the_error_handler(
    settings: Settings,
) -> None:
    """The order routes are ordinary handlers: their RateLimited goes through the app's error
    handler, which must add Retry-After as the thin validation handler does."""

    @get("/test-only/limited")
    async def limited(state: State) -> dict[str, bool]:
        runtime: Runtime = state.runtime
        await runtime.limiter.check("orders", user_id="user_0000009", client_ip="10.9.9.9")
        return {"ok": True}

    app = create_app(settings.replace(rate_limit_orders_per_user="1/5 seconds"))
    app.register(limited)
    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/test-only/limited")).status_code == 200
        response = await client.get("/test-only/limited")
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "rate_limited"
        assert response.json()["scope"] == "user"
        retry_after = int(response.headers["retry-after"])
        assert 4 <= retry_after <= 5
        assert response.json()["retry_after"] == retry_after
