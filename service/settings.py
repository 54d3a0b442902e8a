"""Every setting of the service, in one place, read from `PERFSERVE_*` variables.

The command line only overrides these; worker processes read the same variables,
so a setting given once reaches every process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from perfserve_common.token_file import read_token_file
from service.faults import Faults, parse_faults
from service.routing import check_weights

MIN_TOKEN_LENGTH = 12
PLACEHOLDER_TOKENS = {"changeme", "change-me", "secret", "admin", "token", "password"}


class Settings(BaseSettings):
    """Service configuration; inconsistent values are refused at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="PERFSERVE_",
        extra="ignore",
        use_attribute_docstrings=True,
        env_ignore_empty=True,  # `PERFSERVE_X=` means unset, never an empty value
    )

    store: Path = Path("model_store")
    """Model store written by `perfserve build`."""

    host: str = "127.0.0.1"
    """Interface to listen on; loopback unless the service is meant to be reached."""

    port: int = Field(8000, ge=0, le=65535)
    """TCP port to listen on."""

    workers: int = Field(1, ge=1)
    """Worker processes; metrics are aggregated across them (multiprocess mode)."""

    variants: Annotated[list[str] | None, NoDecode] = None
    """Variants to load, comma-separated (default: every variant in the store)."""

    max_batch_size: int = Field(64, ge=1)
    """Most rows one model call runs; 1 turns batching off."""

    max_batch_delay_ms: float = Field(2.0, ge=0)
    """Longest a batch waits for more rows, and only while the runner is under load."""

    max_queue: int = Field(1024, ge=1)
    """Requests that may wait per variant; past it a request is shed with 503."""

    max_request_rows: int = Field(1024, ge=1)
    """Most rows one request may carry."""

    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Largest prediction body accepted; larger bodies get 413."""

    admin_max_body_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    """Largest body of any other request (`PUT /traffic`, `/rollout`); larger get 413."""

    max_header_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    """Largest request head (request line and headers) read; past it the server answers
    431 and closes the connection, before reading any more of it."""

    max_headers: int = Field(100, ge=8, le=10_000)
    """Most headers one request may carry; past it 431 and the connection closed."""

    max_inflight_body_bytes: int = Field(32 * 1024 * 1024, ge=1024 * 1024)
    """Prediction body bytes one worker reads at once, across its requests; a body that
    would pass it gets 503 with Retry-After before any of it is read (without it, the
    worst case is limit_concurrency times max_body_bytes). At least max_body_bytes."""

    body_timeout_s: float = Field(10.0, gt=0, le=300)
    """How long a client may take to send a request's body once its headers arrived;
    a slower one gets 408 and its connection closed."""

    limit_concurrency: int = Field(2048, ge=16)
    """Most connections and requests one worker holds at once; past it uvicorn answers 503
    (the bound on what slow or idle clients can pin)."""

    keep_alive_s: int = Field(5, ge=1, le=300)
    """Seconds an idle keep-alive connection stays open, and a request's headers may take
    to arrive. A proxy in front must close its idle upstream connections sooner (nginx:
    keepalive_timeout 4s), or it reuses a connection the service is closing: 502."""

    max_feature_range_factor: float = Field(1000.0, ge=0)
    """Refuse (422) a feature beyond its training minimum or maximum by more than this many
    times its training span; 0 turns the check off. The default refuses only values no
    measurement of that feature could take (1e30, 3e38), never drift or a x100 unit
    mistake; set 10 to refuse those too."""

    drift: bool = True
    """Watch the inputs for drift from the training distribution the store recorded:
    values out of the training range and the population stability index per feature
    (service/drift.py); off costs nothing on the hot path."""

    drift_window_rows: int = Field(10_000, ge=100, le=10_000_000)
    """Rows per variant (the most recent) the population stability index is computed
    over, in each worker."""

    drift_min_rows: int = Field(1_000, ge=1)
    """Rows a variant's window must hold before its index is exported: over fewer, chance
    alone moves it (about bins / rows)."""

    drift_interval_s: float = Field(2.0, gt=0, le=300)
    """How often the drift loop counts and bins what arrived, off the hot path; the
    metrics lag the traffic by at most this."""

    request_timeout_ms: float = Field(2000.0, gt=0)
    """A request still queued after this long gets 504 instead of a late answer."""

    queue_deadline_ms: float = Field(0.0, ge=0)
    """Deadline-aware admission: a request that has waited in its variant's queue this
    long when a batch could take it gets 503 with Retry-After, before any model work, as
    its answer could no longer meet the latency objective; after a stall the backlog is
    then refused fast instead of served late. 0 (default): off. Derive it from the p99
    objective less a batch's own time, e.g. 25 for the 50 ms objective."""

    inference: Literal["auto", "thread", "inline"] = "auto"
    """Where batches run: on a runner thread, off the event loop, or inline on the loop.
    auto = inline when the process may use one CPU only, where a thread cannot help."""

    runtime_threads: int = Field(1, ge=1)
    """Threads each model runtime may use (onnxruntime intra-op, BLAS/OpenMP pools)."""

    gc_threshold: int = Field(50_000, ge=1)
    """Growth in live objects since the last collection (of the kinds that can hold
    references) that starts a young-generation collection of Python's cyclic garbage
    collector; set once the models are loaded and the start-up heap is frozen out of
    every collection. Python's default, 700, is less than what one batch's requests
    allocate: under a backlog each waiting request's objects are scanned and kept, again
    and again. What a prediction allocates forms no cycle and is freed by reference
    counting, so a server can collect rarely; above what a batch allocates, it hardly
    collects at all."""

    cache_rows: int = Field(0, ge=0, le=10_000_000)
    """Rows each variant keeps answers for, least recently used dropped first; a request
    whose rows are all cached is answered without the model. 0 (default): no cache. Each
    worker keeps its own; the memory is shown in /models and perfserve_cache_bytes."""

    traffic: Annotated[dict[str, float] | None, NoDecode] = None
    """Initial split, e.g. sklearn_fp32=0.9,onnx_int8=0.1 (default: all on the reference)."""

    shadow: str | None = None
    """Variant that receives a mirrored copy of routed traffic; its answers are discarded."""

    shadow_share: float = Field(0.1, ge=0, le=1)
    """Share of routed requests copied to the shadow variant, once their answer is sent."""

    shadow_tolerance: float = Field(1e-3, ge=0)
    """A regressor's shadow agrees when within this (absolute and relative) of the served
    value; classifiers agree on equal labels."""

    rollout_max_samples: int = Field(50_000, ge=100)
    """Requests (and shadow comparisons) each worker keeps for the rollout's window."""

    rollout_samples_per_user: int = Field(50, ge=0)
    """Requests of one `X-User-Id` (hashed into as many buckets as `rollout_max_samples`)
    that count as a rollout's evidence per window, so a client choosing its user id to
    land on a variant cannot outweigh the others; 0: no cap."""

    force_variants: Annotated[list[str] | None, NoDecode] = None
    """Variants any client may name (`X-Variant`, `/models/{variant}/predict`) instead of
    taking the split's choice, comma-separated (default: every loaded variant). Others,
    and a rollout's candidate while it runs and after a rollback or abort, need the
    admin token."""

    rollout_takeover_s: float = Field(15.0, ge=0)
    """A live replica takes over a rollout whose controller has written no heartbeat for
    this long (at once when it was handed on at a SIGTERM); 0: only a command sent to a
    replica takes a stale rollout over."""

    routing_seed: int | None = None
    """Seed for the random choices: the split of requests without a user id and the
    injected faults (reproducible tests)."""

    admin_token: SecretStr | None = None
    """Bearer token that allows admin changes (`PUT /traffic`, `/rollout`); unset means
    none are allowed. From the environment only: a command line is visible to every user."""

    admin_token_file: Path | None = None
    """File holding the admin token (surrounding whitespace ignored), instead of
    PERFSERVE_ADMIN_TOKEN."""

    inject: Annotated[Faults, NoDecode] = Field(default_factory=dict)
    """Faults for rehearsals, VARIANT:latency-ms=N, VARIANT:error-rate=P or
    VARIANT:flip-rate=P (repeat the option or join with commas); needs allow_faults."""

    allow_faults: bool = False
    """Allow --inject; without it faults are refused, so a rehearsal setting copied into
    production stops the service at start-up instead of hurting users."""

    log_level: Literal["critical", "error", "warning", "info", "debug"] = "warning"
    """Log level of the service and uvicorn."""

    access_log: bool = False
    """Log every request (off by default: it costs a measurable share of the hot path)."""

    graceful_shutdown_s: float = Field(10.0, gt=0)
    """How long shutdown waits for admitted requests to finish."""

    split_file: Path | None = None
    """The traffic split shared by every replica and worker naming the same file: PUT
    /traffic writes it, all follow it, a replica started later takes its split (default:
    the split lives in this server; with --workers N, in a temporary file of its own)."""

    split_poll_s: float = Field(0.2, gt=0, le=60)
    """How often each worker checks the split file: a change reaches every replica
    within this delay."""

    loop_unready_after_s: float = Field(30.0, gt=0, le=3600)
    """A background loop (split or rollout follower, metrics flush, watchdog, shadow)
    failing for longer than this makes /readyz answer 503 (its errors are in the log)."""

    @field_validator("variants", "force_variants", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("traffic", mode="before")
    @classmethod
    def _parse_split(cls, value: Any) -> Any:
        """Accept `name=weight,...` or a JSON object."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("{"):
            return orjson.loads(value)
        pairs = (part.split("=", 1) for part in value.split(",") if part.strip())
        try:
            return {name.strip(): float(weight) for name, weight in pairs}
        except ValueError:
            raise ValueError(
                "must look like name=weight,... e.g. sklearn_fp32=0.9,onnx_int8=0.1"
            ) from None

    @field_validator("inject", mode="before")
    @classmethod
    def _parse_faults(cls, value: Any) -> Any:
        """Accept `VARIANT:KIND=VALUE` items, comma-joined or as a list."""
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        ):
            return parse_faults(value)
        return value

    @field_validator("admin_token")
    @classmethod
    def _refuse_placeholder_token(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None:
            _check_token("admin_token", token.get_secret_value())
        return token

    @field_validator("traffic")
    @classmethod
    def _weights_are_usable(cls, weights: dict[str, float] | None) -> dict[str, float] | None:
        if weights is not None:
            check_weights(weights)
        return weights

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if (
            self.shadow is not None
            and self.variants is not None
            and self.shadow not in self.variants
        ):
            raise ValueError(f"shadow variant {self.shadow!r} is not among the loaded variants")
        if self.admin_token_file is not None:
            if self.admin_token is not None:
                raise ValueError("give admin_token or admin_token_file, not both")
            try:
                secret = read_token_file(self.admin_token_file)
            except OSError as error:
                raise ValueError(f"admin_token_file: {error.strerror}") from None
            _check_token("admin_token_file", secret)
            self.admin_token = SecretStr(secret)
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError(
                "max_inflight_body_bytes must be at least max_body_bytes, or a body of the "
                "largest allowed size could never be read"
            )
        if self.inject and not self.allow_faults:
            raise ValueError("--inject needs --allow-faults (or PERFSERVE_ALLOW_FAULTS=1)")
        if self.inject and self.cache_rows:
            raise ValueError(
                "--cache-rows with --inject: cached answers would hide the injected faults; "
                "rehearse without the cache"
            )
        return self


def _check_token(source: str, secret: str) -> None:
    """Refuse a token that is a well-known placeholder or too short to resist guessing."""
    if secret.lower() in PLACEHOLDER_TOKENS:
        raise ValueError(f"{source} is a placeholder; choose a real secret")
    if len(secret) < MIN_TOKEN_LENGTH:
        raise ValueError(f"{source} must have at least {MIN_TOKEN_LENGTH} characters")
