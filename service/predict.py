"""The prediction hot path as a plain ASGI handler in front of the FastAPI app.

FastAPI's middleware and dependency machinery costs several times the bare ASGI floor per
request. Predictions are most of the traffic, so they skip it: the body is read raw,
parsed once into numpy, and answered with headers built from parts prepared at start-up.
Every other route (models, traffic, health, metrics, OpenAPI) stays in FastAPI.

Order matters for overload: the variant is chosen from headers alone and a full queue is
refused before the body is even parsed, so shedding costs next to nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np

from service.batching import (
    BatchFailed,
    BatchResult,
    DeadlineExceeded,
    InvalidRows,
    QueueFull,
    ShuttingDown,
    VariantUnavailable,
    WaitedTooLong,
)
from service.connections import ARRIVED
from service.guards import check_answers
from service.payload import Reject
from service.protocols.codec import SPLIT_MODEL, Codec, shown_name, unknown_model_message
from service.protocols.native import CODEC as NATIVE
from service.protocols.routes import model_route
from service.serving import LoadedVariant, Serving

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPE = b"application/json"
JSON_HEADER = (b"content-type", JSON_TYPE)
RETRY_AFTER = (b"retry-after", b"1")
CLOSE_HEADER = (b"connection", b"close")
# Refusals sent before the whole body was read: the connection cannot carry another request.
CLOSING_STATUSES = frozenset((408, 413))
MODEL_PREFIX, PREDICT_SUFFIX = "/models/", "/predict"
# Formatted straight to bytes: no str to build and encode per answer.
NO_EXTENSIONS: dict[str, Any] = {}
SERVER_TIMING = b"queue;dur=%.3f, infer;dur=%.3f, total;dur=%.3f"
SERVER_TIMING_HIT = b"cache;desc=hit, total;dur=%.3f"


class Answered(NamedTuple):
    """A 200 answer, with the rows and result a shadow copy is compared on."""

    body: bytes
    headers: list[tuple[bytes, bytes]]
    rows: np.ndarray
    result: BatchResult
    cached: bool
    """Answered from the row cache: not the variant's speed, nor a row to mirror."""


S = TypeVar("S", bound=Serving)
"""The service a `PredictEndpoint` serves from: any `Serving`; the app passes its full
`Service`, which `PredictEndpoint.service` then keeps as such for whoever built it."""


class PredictEndpoint(Generic[S]):
    """Routes `POST /predict` and `POST /models/{variant}/predict`, and the same in the
    other protocols (V2 `/v2/models/{model}/infer`, V1 `/v1/models/{model}:predict`, see
    service/protocols/); passes the rest on.

    It sees the service only as a `Serving` (service/serving.py), and takes what a request
    calls from it once, here: a request looks up no attribute chain."""

    def __init__(self, service: S, app: ASGIApp) -> None:
        self.service = service
        self.app = app
        settings = service.settings
        self.timeout_s = settings.request_timeout_ms / 1000
        self.max_body = settings.max_body_bytes
        self.max_rows = settings.max_request_rows
        self.n_features = service.manifest.n_features
        self.names = service.names
        self.variants = service.variants
        self.choose = service.choose
        self.forcing = service.forcing
        self.body_budget = service.body_budget
        self.body_deadlines = service.body_deadlines
        self.row_screen = service.row_screen
        self.observe_request = service.observe_request
        self.count_rejection = service.count_rejection
        self.record_evidence = service.record_evidence
        self.mirror = service.mirror
        self.inflight = 0
        """Prediction requests inside the server now; the gauge reads it at each flush."""
        service.publish_inflight(lambda: self.inflight)
        self._refusals: dict[tuple[str, Codec], tuple[int, bytes, list[tuple[bytes, bytes]]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == "/predict":
                return await self._predict(scope, receive, send, None, NATIVE)
            if path.startswith(MODEL_PREFIX) and path.endswith(PREDICT_SUFFIX):
                variant = path[len(MODEL_PREFIX) : -len(PREDICT_SUFFIX)]
                if variant and "/" not in variant:
                    return await self._predict(scope, receive, send, variant, NATIVE)
            elif (model := model_route(path)) is not None:
                name, codec = model
                named = None if name == SPLIT_MODEL else name
                return await self._predict(scope, receive, send, named, codec, name)
        await self.app(scope, receive, send)

    async def _predict(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        variant: str | None,
        codec: Codec,
        model: str | None = None,
    ) -> None:
        """Answer one prediction in `codec`'s protocol; `model` is the name the client
        asked for, when its protocol names one."""
        started = scope.get("extensions", NO_EXTENSIONS).get(ARRIVED) or time.perf_counter()
        self.inflight += 1
        by_split = False
        answered: Answered | None = None
        try:
            try:
                if scope["method"] != "POST":
                    raise Reject(405, "invalid_input", "use POST with a JSON body")
                variant, by_split, user_id, length = self._route(scope["headers"], variant, codec)
                if self.variants[variant].batcher.full:
                    status, body, headers = self._refuse_at_capacity(variant, codec)
                else:
                    answered = await self._answer(
                        receive, started, variant, length, codec, model or variant, scope
                    )
                    status, body, headers = 200, answered.body, answered.headers
            except Reject as reject:
                status, body, headers = reject.status, codec.error(reject.message), []
                if reject.retry_after is not None:
                    headers.append((b"retry-after", b"%d" % reject.retry_after))
                if status == 405:
                    headers.append((b"allow", b"POST"))
                elif status in CLOSING_STATUSES:
                    headers.append(CLOSE_HEADER)
                self.count_rejection(reject.reason)
            await _send(send, status, body, headers)
            loaded = self.variants.get(variant) if variant else None
            if loaded is not None:
                elapsed = time.perf_counter() - started
                self.observe_request(loaded, status, elapsed)
                # Only requests the split routed are a rollout's evidence or shadow traffic;
                # a request that names its variant is a test of that variant. A cache hit
                # is neither: the model did not answer it (service/cache.py).
                if by_split and (answered is None or not answered.cached):
                    evidence = self.record_evidence(loaded.info.name, user_id, elapsed, status)
                    if answered is not None:
                        self.mirror(loaded.info.name, answered.rows, answered.result, evidence)
        finally:
            self.inflight -= 1

    def _refuse_at_capacity(
        self, variant: str, codec: Codec
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """A full queue's 503, before the body is read, encoded once per variant and
        protocol: under overload most requests end here, and every microsecond a refusal
        costs is taken from the requests being served."""
        if (refusal := self._refusals.get((variant, codec))) is None:
            reject = _at_capacity(variant)
            refusal = (503, codec.error(reject.message), [RETRY_AFTER])
            self._refusals[variant, codec] = refusal
        self.count_rejection("queue_full")
        return refusal

    def _route(
        self, headers: list[tuple[bytes, bytes]], variant: str | None, codec: Codec
    ) -> tuple[str, bool, bytes | None, int]:
        """The variant to serve (path, then X-Variant, then the split), whether the split
        chose it, the user id, and the body length."""
        service = self.service
        if not service.ready:
            detail = service.load_error or "models are still loading"
            raise Reject(503, "not_ready", f"not ready: {detail}", retry_after=1)
        named = variant
        forced, user_id, length, content_type, authorization = _routing_headers(headers)
        if (
            content_type is not None
            and content_type != JSON_TYPE
            and not _is_json(content_type)
            and content_type not in codec.media_types
        ):
            raise Reject(415, "invalid_input", "send the body as Content-Type: application/json")
        variant = variant or forced
        by_split = variant is None
        variant = variant or self.choose(user_id)
        if variant not in self.variants:
            if codec is not NATIVE and variant == named:
                # The path of a protocol that names models named it: a model to its client.
                message = unknown_model_message(variant, self.names)
            else:
                message = f"unknown variant {shown_name(variant)!r}; available: {self.names}"
            raise Reject(404, "unknown_variant", message)
        if not by_split:
            self.forcing.check(variant, authorization)
        return variant, by_split, user_id, length

    async def _answer(
        self,
        receive: Receive,
        started: float,
        variant: str,
        length: int,
        codec: Codec,
        model: str,
        scope: Scope,
    ) -> Answered:
        loaded = self.variants[variant]
        batcher = loaded.batcher
        if length > self.max_body:
            raise Reject(413, "too_large", f"body of {length} bytes exceeds {self.max_body}")
        # A body without Content-Length (chunked) may be as large as any.
        held = length or self.max_body
        self.body_budget.take(held)
        try:
            body = await self.body_deadlines.read(receive, self.max_body, started)
            rows, request = codec.parse(body, self.n_features, self.max_rows, scope["headers"])
        finally:
            self.body_budget.give(held)
        parsed = time.perf_counter()
        batcher.metrics.preprocess.observe(parsed - started)
        cache = loaded.cache
        if cache is not None and (hit := cache.lookup(rows)) is not None:
            return self._from_cache(loaded, hit, rows, codec, model, request, started)
        try:
            result = await batcher.submit(rows, started + self.timeout_s)
        except InvalidRows:
            raise self.row_screen.refusal(rows) from None
        except QueueFull:
            raise _at_capacity(variant) from None
        except ShuttingDown:
            raise Reject(503, "shutting_down", "server is shutting down", retry_after=1) from None
        except WaitedTooLong:
            raise _waited_too_long(batcher.queue_deadline_s) from None
        except DeadlineExceeded:
            raise Reject(
                504, "deadline", f"queued past the {self.timeout_s * 1000:.0f} ms deadline"
            ) from None
        except VariantUnavailable as error:
            raise Reject(
                503, "unavailable", f"{variant} is unavailable: {error}", retry_after=1
            ) from None
        except BatchFailed:
            # What failed is in the server's log; a client learns only where to look.
            raise Reject(
                500, "model_error", f"{variant} failed on this request's batch; see the server log"
            ) from None
        if not result.finite:
            check_answers(result.labels, result.probabilities)
        if cache is not None:
            cache.store(rows, result)
        answered = time.perf_counter()
        body = codec.encode(model, variant, loaded.info.model_version, result, request)
        done = time.perf_counter()
        batcher.metrics.postprocess.observe(done - answered)
        timing = SERVER_TIMING % (
            result.queue_s * 1000,
            result.infer_s * 1000,
            (done - started) * 1000,
        )
        headers = [loaded.tag, (b"server-timing", timing)]
        return Answered(body, headers, rows, result, False)

    @staticmethod
    def _from_cache(
        loaded: LoadedVariant,
        result: BatchResult,
        rows: np.ndarray,
        codec: Codec,
        model: str,
        request: Any,
        started: float,
    ) -> Answered:
        """A cache hit's answer: encoded as any other, timed without queue or model. Its
        rows still count as what users sent, for input drift (service/drift.py)."""
        if (observe := loaded.batcher.observe) is not None:
            observe(rows)
        answered = time.perf_counter()
        body = codec.encode(model, loaded.info.name, loaded.info.model_version, result, request)
        done = time.perf_counter()
        loaded.batcher.metrics.postprocess.observe(done - answered)
        timing = SERVER_TIMING_HIT % ((done - started) * 1000)
        return Answered(body, [loaded.tag, (b"server-timing", timing)], rows, result, True)


def _waited_too_long(queue_deadline_s: float) -> Reject:
    return Reject(
        503,
        "queue_deadline",
        f"queued longer than the {queue_deadline_s * 1000:g} ms queue deadline; retry shortly",
        retry_after=1,
    )


def _at_capacity(variant: str) -> Reject:
    return Reject(503, "queue_full", f"{variant} is at capacity; retry shortly", retry_after=1)


def _routing_headers(
    headers: list[tuple[bytes, bytes]],
) -> tuple[str | None, bytes | None, int, bytes | None, bytes | None]:
    """X-Variant, X-User-Id, Content-Length, Content-Type and Authorization, in one pass
    over the headers."""
    forced = user_id = content_type = authorization = None
    length = 0
    for name, value in headers:
        if name == b"x-variant":
            forced = value.decode("latin-1")
        elif name == b"x-user-id":
            user_id = value
        elif name == b"content-length" and value.isdigit():
            length = int(value)
        elif name == b"content-type":
            content_type = value
        elif name == b"authorization":
            authorization = value
    return forced, user_id, length, content_type, authorization


def _is_json(content_type: bytes) -> bool:
    """application/json or application/*+json, with or without parameters (charset).
    A missing type is accepted, as load generators and scripts often send none; what an
    HTML form sends (text/plain, form encodings) is refused."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON_HEADER, (b"content-length", b"%d" % len(body)), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
