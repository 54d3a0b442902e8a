"""Record the samples the judge's noise benchmark resamples, from a real `perfserve serve`.

Two identical variants (the store's onnx_int8 and a twin entry pointing at the same
artifact) take interleaved requests from a few concurrent clients, so both see the same
machine at the same moments, as a baseline and a canary do in one window. Each answer's
server time (`Server-Timing: total`) and status are kept. Every hold-out row is also sent
to sklearn_fp32 and onnx_int8, whose scores stand for a shadow comparison of a healthy
conversion (quantization moves a few probabilities, rarely a label).
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from perfserve.modelstore.build import build_store
from perfserve_common.processes import running_server
from service.store import load_holdout

BASELINE = "onnx_int8"
TWIN = "onnx_int8_twin"
SHADOW_PAIR = ("sklearn_fp32", "onnx_int8")
LATENCY_FILE = "judge_latency.csv"
SCORES_FILE = "judge_scores.csv"


@dataclass(frozen=True)
class Answer:
    sent_s: float
    variant: str
    status: int
    server_ms: float


def record(out: Path, per_variant: int, concurrency: int, cpus: str | None) -> None:
    """Build a store with a twin variant, serve it, and write both fixture files."""
    with tempfile.TemporaryDirectory(prefix="judge-record-") as tmp:
        store = Path(tmp) / "model_store"
        build_store(store)
        add_twin(store)
        rows = load_holdout(store).features
        with running_server(store, cpus=cpus) as server:
            answers = asyncio.run(_drive(server.url, rows, per_variant, concurrency))
            scores = asyncio.run(_shadow_scores(server.url, rows))
    out.mkdir(parents=True, exist_ok=True)
    with (out / LATENCY_FILE).open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["variant", "status", "server_ms"])  # in the order they were sent
        for a in answers:
            writer.writerow([a.variant, a.status, f"{a.server_ms:.3f}"])
    with (out / SCORES_FILE).open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["row", "baseline_score", "candidate_score"])
        for index, (baseline, candidate) in enumerate(scores):
            writer.writerow([index, f"{baseline:.6g}", f"{candidate:.6g}"])


def add_twin(store: Path) -> None:
    """A second manifest entry for the same artifact: a variant identical in all but name."""
    path = store / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["variants"][TWIN] = {**manifest["variants"][BASELINE], "name": TWIN}
    path.write_text(json.dumps(manifest, indent=2))


async def _drive(url: str, rows: np.ndarray, per_variant: int, concurrency: int) -> list[Answer]:
    plan = [BASELINE, TWIN] * per_variant
    random.Random(0).shuffle(plan)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for variant in plan:
        queue.put_nowait(variant)
    answers: list[Answer] = []
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as client:

        async def worker(seed: int) -> None:
            pick = random.Random(seed)
            while not queue.empty():
                variant = queue.get_nowait()
                row = rows[pick.randrange(len(rows))].tolist()
                sent = time.perf_counter() - started
                response = await client.post(
                    f"/models/{variant}/predict", json={"instances": [row]}
                )
                answers.append(Answer(sent, variant, response.status_code, _total_ms(response)))

        await asyncio.gather(*(worker(seed) for seed in range(concurrency)))
    return sorted(answers, key=lambda answer: answer.sent_s)


async def _shadow_scores(url: str, rows: np.ndarray) -> list[tuple[float, float]]:
    """Probability of the positive class from both variants of the pair, row by row."""
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        scores: list[tuple[float, float]] = []
        for row in rows.tolist():
            pair = [
                (await client.post(f"/models/{variant}/predict", json={"instances": [row]})).json()[
                    "probabilities"
                ][0][-1]
                for variant in SHADOW_PAIR
            ]
            scores.append((float(pair[0]), float(pair[1])))
        return scores


def _total_ms(response: httpx.Response) -> float:
    """The server's own time for the request; NaN when it did not answer with one."""
    for part in response.headers.get("server-timing", "").split(","):
        name, _, value = part.strip().partition(";dur=")
        if name == "total":
            return float(value)
    return float("nan")
