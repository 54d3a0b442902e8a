"""`perfserve sweep`'s plan is made from the command line and the target's facts alone:
no request, no change to the parsed options, and every usage error found without a
server."""

from __future__ import annotations

import argparse
import copy
import os
import re
from typing import NoReturn

import httpx
import pytest

from loadtests.targets import TargetFacts
from perfserve.cli.sweep import add_arguments, plan_from_args, read_target
from perfserve_common.usage import UsageError

URL = "http://127.0.0.1:9"  # the discard port: nothing answers there
FACTS = TargetFacts(
    URL,
    ["sklearn_fp32", "onnx_int8"],
    split_weights={"sklearn_fp32": 0.9, "onnx_int8": 0.1},
    model_versions={"sklearn_fp32": "m-1", "onnx_int8": "m-1-int8"},
)


@pytest.fixture(autouse=True)
def no_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any request the plan tried to make fails the test; no PERFSERVE_* setting of the
    developer's shell changes the options' defaults."""

    def refused(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(f"a request was made: {args}")

    monkeypatch.setattr(httpx, "get", refused)
    monkeypatch.setattr(httpx.Client, "send", refused)
    for name in [n for n in os.environ if n.startswith("PERFSERVE_")]:
        monkeypatch.delenv(name)


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--url", URL, *argv])


def test_the_plan_comes_from_the_options_and_the_facts() -> None:
    plan = plan_from_args(parsed("--step-seconds", "8"), FACTS)
    assert plan.url == URL
    assert plan.targets == ["sklearn_fp32", "onnx_int8"]
    assert plan.rates is None and plan.rounds == 5 and plan.sweep
    assert plan.split_weights == FACTS.split_weights
    assert plan.model_versions == FACTS.model_versions
    assert (plan.steps.step_seconds, plan.steps.window_seconds) == (8.0, 2.0)
    assert plan.steps.max_step_seconds == 24.0


def test_the_options_are_left_as_they_were_parsed() -> None:
    """Switches given as PERFSERVE_<FLAG>=yes arrive as strings; the plan reads them as
    switches without writing the booleans back."""
    args = parsed("--rates", "100,200", "--variants", "onnx_int8", "--soak-rate", "50")
    args.stress, args.calibrate, args.auto = "yes", "1", "false"
    before = copy.deepcopy(vars(args))
    plan = plan_from_args(args, FACTS)
    assert vars(args) == before
    assert plan.stress and plan.calibrate and plan.sweep
    assert plan.targets == ["onnx_int8"] and plan.rounds == 1
    assert plan.rates == [100.0, 200.0]


def test_a_soak_alone_sweeps_nothing() -> None:
    plan = plan_from_args(parsed("--soak-rate", "50"), FACTS)
    assert not plan.sweep and plan.soak_rate == 50.0


def test_the_facts_list_is_not_shared_with_the_plan() -> None:
    plan = plan_from_args(parsed(), FACTS)
    assert plan.targets == FACTS.models and plan.targets is not FACTS.models


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["--variants", "onnx_int9,split"],
            f"--variants onnx_int9: not served by {URL}; choose among sklearn_fp32, onnx_int8, "
            "or 'split' for the live split",
        ),
        (["--rates", "100", "--auto"], "--rates and --auto exclude each other"),
        (
            ["--workers", "-1"],
            "--workers must be >= 0, --max-in-flight and --rows-per-request >= 1",
        ),
        (["--max-in-flight", "0"], "--workers must be >= 0"),
        (["--rows-per-request", "0"], "--workers must be >= 0"),
        (["--generators", "0"], "--generators must be >= 1"),
        (["--warmup-seconds", "-1"], "--warmup-seconds -1: must be 0 or more"),
        (
            ["--workers", "2"],
            "--workers is for --engine locust; the native engine takes --generators",
        ),
    ],
)
def test_a_usage_error_is_one_line_naming_the_option(argv: list[str], line: str) -> None:
    with pytest.raises(UsageError) as error:
        plan_from_args(parsed(*argv), FACTS)
    assert str(error.value).startswith(line)


def test_auto_from_the_environment_excludes_rates_too() -> None:
    args = parsed("--rates", "100")
    args.auto = "true"
    with pytest.raises(UsageError, match="--rates and --auto exclude each other"):
        plan_from_args(args, FACTS)


def test_locust_workers_are_planned() -> None:
    plan = plan_from_args(parsed("--engine", "locust", "--workers", "2"), FACTS)
    assert (plan.engine, plan.workers) == ("locust", 2)


def test_a_url_without_a_scheme_is_refused_before_any_request() -> None:
    with pytest.raises(UsageError, match=re.escape("--url 127.0.0.1:9: must start with http://")):
        read_target(parsed("--url", "127.0.0.1:9/"))
