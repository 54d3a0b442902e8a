"""Shifted traffic (`--shift FEATURE=SCALE`): parsing, the rows it sends, and refusals."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from loadtests.bodies import holdout_rows
from loadtests.shift import shift_specs, shifted
from perfserve_common.usage import UsageError
from service.store import Dataset


def test_specs_are_feature_scale_pairs_comma_joined() -> None:
    assert shift_specs("mean radius=2") == [("mean radius", 2.0)]
    assert shift_specs(" a=0.5, b=-1 ,") == [("a", 0.5), ("b", -1.0)]


@pytest.mark.parametrize("text", ["a", "a=", "=2", "a=two", "a=nan", "a=inf", ""])
def test_a_spec_without_a_finite_scale_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="FEATURE=SCALE"):
        shift_specs(text)


def test_only_the_named_features_are_scaled(holdout: Dataset) -> None:
    names = holdout.feature_names
    moved = shifted(holdout.features, [(names[2], 2.0), (names[0], 0.5)], names)
    assert np.allclose(moved[:, 2], holdout.features[:, 2].astype(np.float64) * 2)
    assert np.allclose(moved[:, 0], holdout.features[:, 0].astype(np.float64) * 0.5)
    assert np.array_equal(moved[:, 1], holdout.features[:, 1])
    assert shifted(holdout.features, (), names) is holdout.features


def test_an_unknown_feature_is_a_usage_error_that_lists_the_features(holdout: Dataset) -> None:
    with pytest.raises(UsageError, match=r"--shift nope: not a feature.*mean radius"):
        shifted(holdout.features, [("nope", 2.0)], holdout.feature_names)


def test_the_load_tools_send_shifted_hold_out_rows(store: Path, holdout: Dataset) -> None:
    rows = holdout_rows(store, [("worst area", 3.0)])
    column = holdout.feature_names.index("worst area")
    assert np.allclose(rows[:, column], holdout.features[:, column].astype(np.float64) * 3)
