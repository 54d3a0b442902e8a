"""The row screen the batcher runs on each batch: what it lets through, and the 422 that a
request holding a refused row gets."""

from __future__ import annotations

import numpy as np

from service.guards import FeatureRangeGuard
from service.store import Dataset, Manifest


def test_a_batch_of_training_rows_passes_whole(manifest: Manifest, holdout: Dataset) -> None:
    screen = FeatureRangeGuard(manifest, factor=1000)
    assert screen.bad_rows(holdout.features) is None


def test_only_the_rows_outside_the_range_or_float32_are_marked(
    manifest: Manifest, holdout: Dataset
) -> None:
    rows = holdout.features[:4].copy()
    rows[1, 4] = 1e30  # mean smoothness, trained on 0.05 to 0.16
    rows[3, 0] = np.inf  # what 1e39 becomes in the batch's float32 cast
    screen = FeatureRangeGuard(manifest, factor=1000)
    assert screen.bad_rows(rows).tolist() == [False, True, False, True]  # type: ignore[union-attr]


def test_with_the_range_check_off_only_what_is_not_a_finite_float32_is_refused(
    manifest: Manifest, holdout: Dataset
) -> None:
    rows = holdout.features[:3].copy()
    rows[0, 4] = 1e30
    rows[1, 2] = np.nan
    rows[2, 0] = -np.inf
    screen = FeatureRangeGuard(manifest, factor=0)
    assert screen.bad_rows(rows).tolist() == [False, True, True]  # type: ignore[union-attr]


def test_the_refusal_names_the_first_bad_value_and_why(
    manifest: Manifest, holdout: Dataset
) -> None:
    screen = FeatureRangeGuard(manifest, factor=1000)
    parsed = holdout.features[:2].astype(np.float64)
    parsed[1, 4] = 1e30
    far = screen.refusal(parsed)
    assert far.status == 422
    assert far.message.startswith("row 1 feature 4 (mean smoothness) = 1e+30 is far outside")
    parsed[0, 7] = 1e39
    beyond = screen.refusal(parsed)
    assert beyond.message == "row 0 holds a value out of float32 range (beyond ±3.4e38)"
