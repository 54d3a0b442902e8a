"""Which stage of serving a sampled stack belongs to: the mapping, as data, in one place.

A stack is read from its innermost frame outwards; the first frame that a rule names
decides its stage, so a numpy call made while decoding counts as decoding and a socket
write made while answering counts as the event loop's I/O. A stack no rule names is the
event loop's own work when it sits under the loop (uvloop's C code between callbacks),
and `other` when it does not. Stacks whose innermost frame is a wait on a lock or a queue
are a thread asleep that the sampler caught waking: they are not CPU and are dropped.

Frames look as py-spy writes them: `function (path/of/module.py:line)`, native ones
`symbol (library.so)`. A rule matches a frame whose path contains `path` and whose
function is one of `functions` (any function when that is empty).
"""

from __future__ import annotations

from dataclasses import dataclass

STAGES = (
    "http_parse",
    "admission",
    "decode",
    "queue_wait",
    "model",
    "encode",
    "metrics",
    "event_loop",
    "gc",
    "other",
)
"""The stages of the per-stage table, in the order a request meets them."""

IDLE = "idle"
"""Not a stage: a thread asleep in a wait (dropped from the CPU figures)."""

STAGE_MEANINGS = {
    "http_parse": "HTTP/1.1 both ways (httptools callbacks, uvicorn's cycle, response "
    "head) and the ASGI hand-off, body receipt included",
    "admission": "routing a request to its variant, header checks, the admin guard, "
    "the split, the queue's admission test",
    "decode": "JSON decode into numpy and the row screen (per request and per batch)",
    "queue_wait": "gathering a batch: the batch loop, its yields while requests arrive, "
    "taking a batch off the queue",
    "model": "the model call (onnxruntime, scikit-learn) and handing its answers back",
    "encode": "encoding the answer (orjson) and checking it is finite",
    "metrics": "Prometheus: observations, folding, /metrics renders, rollout evidence",
    "event_loop": "the event loop's own work and I/O: uvloop between callbacks, tasks "
    "and futures, socket reads and writes",
    "gc": "the cyclic garbage collector (seen only with --native: it has no Python frame)",
    "other": "samples no rule names (start-up leftovers, threads of other tools)",
}


@dataclass(frozen=True)
class Rule:
    stage: str
    path: str
    functions: tuple[str, ...] = ()

    def matches(self, function: str, path: str) -> bool:
        return self.path in path and (not self.functions or function in self.functions)


IDLE_LEAVES: tuple[Rule, ...] = (
    Rule(IDLE, "threading.py", ("Condition.wait", "Event.wait", "Thread.join")),
    Rule(IDLE, "concurrent/futures/thread.py", ("_worker",)),
    Rule(IDLE, "queue.py", ("Queue.get",)),
    Rule(IDLE, "selectors.py", ("EpollSelector.select",)),
    # With --native: the waits themselves.
    Rule(IDLE, "libpython", ("PyThread_acquire_lock_timed",)),
    Rule(
        IDLE,
        "libc.so",
        (
            "epoll_wait",
            "epoll_pwait",
            "poll",
            "select",
            "pthread_cond_wait",
            "pthread_cond_timedwait",
            "sem_wait",
            "sem_timedwait",
        ),
    ),
)
"""Innermost frames of a thread asleep in a wait (checked on the innermost frame only,
past native frames py-spy could not name)."""

# Most specific first: the first rule matching a frame wins for that frame.
RULES: tuple[Rule, ...] = (
    # The garbage collector (native frames of libpython).
    Rule(
        "gc",
        "libpython",
        (
            "gc_collect_main",
            "gc_collect_region",
            "gc_collect_with_callback",
            "_PyGC_Collect",
            "collect",
            "gc_collect_young",
            "gc_collect_full",
            "subtract_refs",
            "update_refs",
            "move_unreachable",
            "visit_reachable",
            "deduce_unreachable",
            "_PyObject_GC_Link",
        ),
    ),
    # Metrics before everything else: an observation inside any stage is metrics' cost.
    Rule("metrics", "prometheus_client/"),
    Rule("metrics", "service/metrics/"),
    Rule("metrics", "service/request_metrics.py", ("RequestMetrics.observe_request",)),
    Rule("metrics", "service/batching.py", ("MicroBatcher._record",)),
    Rule("metrics", "service/rollout/"),
    # I/O on the socket: the event loop's, wherever the write is issued from.
    Rule("event_loop", "service/connections.py", ("_Prefixed.write", "_Prefixed.flush")),
    Rule(
        "event_loop",
        "libc.so",
        (
            "write",
            "read",
            "writev",
            "send",
            "recv",
            "sendmsg",
            "recvmsg",
        ),
    ),
    # The answer.
    Rule("encode", "service/payload.py", ("encode_prediction", "encode_error", "_jsonable")),
    Rule("encode", "service/guards.py", ("finite_answers", "check_answers")),
    Rule("encode", "orjson"),
    # The request's body into rows.
    Rule("decode", "service/payload.py", ("parse_instances", "_json_error_message")),
    Rule("decode", "service/guards.py"),
    Rule("decode", "service/batching.py", ("MicroBatcher._screened",)),
    # The model call and its answers handed to the waiting requests.
    Rule("model", "onnxruntime"),
    Rule("model", "sklearn/"),
    Rule("model", "service/runtimes.py"),
    Rule(
        "model",
        "service/batching.py",
        ("MicroBatcher._timed_predict", "MicroBatcher._deliver", "MicroBatcher._execute"),
    ),
    Rule("model", "service/quality.py"),
    # Waiting for a batch: the loop that gathers one.
    Rule(
        "queue_wait",
        "service/batching.py",
        ("MicroBatcher._gather", "MicroBatcher._run", "take_batch"),
    ),
    # Routing and admission.
    Rule(
        "admission",
        "service/batching.py",
        ("MicroBatcher.submit", "MicroBatcher.full", "MicroBatcher.unavailable"),
    ),
    Rule("admission", "service/routing.py"),
    Rule("admission", "service/admin.py"),
    Rule("admission", "service/shadow.py"),
    Rule(
        "admission",
        "service/predict.py",
        (
            "PredictEndpoint._route",
            "_routing_headers",
            "_is_json",
            "PredictEndpoint._refuse_at_capacity",
        ),
    ),
    Rule("admission", "service/request_metrics.py", ("RequestMetrics.count_rejection",)),
    Rule("admission", "service/canary.py", ("Canary.record_evidence",)),
    # HTTP both ways and the ASGI hand-off.
    Rule("http_parse", "service/predict.py", ("_send",)),
    Rule("http_parse", "service/receiving.py"),
    Rule("http_parse", "service/connections.py"),
    Rule("http_parse", "uvicorn/protocols/"),
    Rule("http_parse", "httptools"),
    Rule("http_parse", "h11"),
    # What is left of the request's own handler: its routing and bookkeeping.
    Rule("admission", "service/predict.py"),
    # Everything FastAPI serves (health, /models, /metrics' route) is its HTTP layer.
    Rule("http_parse", "starlette/"),
    Rule("http_parse", "fastapi/"),
)

LOOP_FRAMES = ("asyncio/", "uvloop", "loop.c", "libuv", "uvicorn/server.py", "Runner.run")
"""Frames that mark a stack no rule named as the event loop's own work."""


def split_frame(frame: str) -> tuple[str, str]:
    """`function (path:line)` as (function, path)."""
    function, _, where = frame.partition(" (")
    return function, where.rstrip(")")


def stage_of(frames: list[str]) -> str:
    """The stage of one stack, frames from the outermost to the innermost (or `IDLE`)."""
    named = [frame for frame in frames if not frame.startswith("0x")]
    if named and any(rule.matches(*split_frame(named[-1])) for rule in IDLE_LEAVES):
        return IDLE
    for frame in reversed(frames):
        function, path = split_frame(frame)
        for rule in RULES:
            if rule.matches(function, path):
                return rule.stage
    if any(marker in frame for frame in frames for marker in LOOP_FRAMES):
        return "event_loop"
    return "other"
