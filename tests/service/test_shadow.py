"""Shadow traffic: what the mirror compares, and that a running server's agreement matches
an offline comparison of the two variants on the same inputs."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from perfserve_common.processes import running_server
from service.batching import BatchResult
from service.runtimes import open_runner
from service.shadow import compare_answers
from service.store import Dataset, Manifest
from tests.utils import body, eventually

BASELINE, SHADOW = "sklearn_fp32", "onnx_int8"


def result(labels: list[float], probabilities: list[list[float]] | None = None) -> BatchResult:
    probs = None if probabilities is None else np.asarray(probabilities, dtype=np.float32)
    return BatchResult(np.asarray(labels), probs, 0.0, 0.0, len(labels))


def test_regressors_agree_within_the_tolerance() -> None:
    disagreed, served, mirrored = compare_answers(
        result([10.0, 10.0, 0.0]), result([10.005, 10.5, 0.0005]), tolerance=1e-3
    )
    assert disagreed.tolist() == [False, True, False]
    assert served.tolist() == [10.0, 10.0, 0.0]
    assert mirrored.tolist() == pytest.approx([10.005, 10.5, 0.0005])


def test_classifiers_compare_labels_and_the_served_labels_probability() -> None:
    served = result([1, 0], [[0.2, 0.8], [0.7, 0.3]])
    mirrored = result([1, 1], [[0.4, 0.6], [0.4, 0.6]])
    disagreed, baseline, candidate = compare_answers(served, mirrored, tolerance=1e-3)
    assert disagreed.tolist() == [False, True]
    assert baseline.tolist() == pytest.approx([0.8, 0.7])
    assert candidate.tolist() == pytest.approx([0.6, 0.4])


def offline(store: Path, manifest: Manifest, rows: np.ndarray) -> tuple[int, float]:
    """Disagreements and mean |probability difference| of the shadow against the
    baseline, each row run alone, as the server runs single-row requests sent one by one."""
    runners = {
        name: open_runner(
            store / manifest.variants[name].path, manifest.variants[name].format, manifest.task
        )
        for name in (BASELINE, SHADOW)
    }
    disagreed, differences = 0, []
    for row in rows:
        answers = {
            name: runner.predict(row[None, :].astype(np.float32))
            for name, runner in runners.items()
        }
        base, shadow = (
            result(list(a.labels), None if a.probabilities is None else a.probabilities.tolist())
            for a in (answers[BASELINE], answers[SHADOW])
        )
        differs, served, mirrored = compare_answers(base, shadow, tolerance=1e-3)
        disagreed += int(differs.sum())
        differences.extend(np.abs(mirrored - served))
    return disagreed, float(np.mean(differences))


def shadow_figures(metrics: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.labels.get("variant") != SHADOW:
                continue
            if sample.name == "perfserve_shadow_predictions_total":
                found[sample.labels["outcome"]] = sample.value
            elif sample.name.startswith("perfserve_shadow_probability_difference_"):
                found[sample.name.rsplit("_", 1)[1]] = sample.value
            elif sample.name == "perfserve_shadow_duration_seconds_count":
                found["timed"] = sample.value
    return found


def wait_until_compared(client: httpx.Client, url: str, count: int) -> None:
    def compared() -> bool:
        figures = shadow_figures(client.get(url).text)
        return figures.get("agree", 0) + figures.get("disagree", 0) >= count

    eventually(compared, every_s=0.005, what=f"the shadow did not answer copy {count}")


@pytest.mark.integration
def test_served_agreement_matches_the_offline_comparison(
    store: Path, manifest: Manifest, holdout: Dataset
) -> None:
    rows = holdout.features[:120]
    options = ["--traffic", f"{BASELINE}=1", "--shadow", SHADOW, "--shadow-share", "1"]
    with running_server(store, options=options) as server, httpx.Client() as client:
        for sent, row in enumerate(rows, 1):
            client.post(f"{server.url}/predict", json=body(row)).raise_for_status()
            # One at a time, each copy answered before the next request: the shadow's queue
            # is empty at every mirror, so none is dropped for being busy.
            wait_until_compared(client, f"{server.url}/metrics", sent)
        for row in rows[:20]:  # naming the variant is a test of it, never mirrored
            forced = client.post(f"{server.url}/models/{BASELINE}/predict", json=body(row))
            forced.raise_for_status()
        figures = shadow_figures(client.get(f"{server.url}/metrics").text)
    disagreed, mean_difference = offline(store, manifest, rows)
    assert figures["agree"] + figures["disagree"] == len(rows) == figures["timed"]
    assert figures["disagree"] == disagreed
    assert figures["sum"] / figures["count"] == pytest.approx(mean_difference, abs=1e-6)
