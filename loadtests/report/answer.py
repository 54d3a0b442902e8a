"""The sweep's answer in words: the knee per target, marked "≥" when it is only a lower
bound, why it is one, and the conditions it was measured under.

Every output (terminal, HTML, plots) takes its knee text from `knee_text`, which reads the
one flag the sweep defines (`Knee.is_lower_bound`, `knee_is_lower_bound` in summary.json),
so a bound can never print as a measured limit in one place and not another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from loadtests import SPLIT
from loadtests.scenarios.pacing import LATE_TOLERANCE_S
from loadtests.sweep.acceptance import StepVerdict
from loadtests.sweep.conditions import placement
from loadtests.sweep.judge import GENERATOR_CPU_LIMIT

DASH = "\N{EN DASH}"
"""Between the two ends of a range, as typeset (9,600 to 11,200 with it in between)."""
BOUND_REASONS = {
    "generator": "the next rate was limited by the load generator, not the server",
    "unstable": "the next rate gave no settled answer",
    "max-rate": "the highest rate tried held (try higher rates)",
}
"""Why a knee is only a lower bound, by what limited it (`Knee.limited_by`)."""
SLOW_CORE = 0.9
"""Below this share of its fastest speed in the run, the server's core was slow enough
to move a knee by more than the 10% two measurements of one are expected to agree to."""
MOSTLY_IDLE_GENERATOR = 0.5
"""A generator process busy less than this share of its core that still sent late was
more likely held up by its machine (docs/PERFORMANCE.md, "A host where work after a
pause runs slowly") than by its own work, and more generators would not help."""
QUEUE_MODEL_MIN_UTILIZATION = 0.3
"""Below this runner utilization at every step, the M/D/c model of the batch queue does
not describe what requests waited for (see `queue_model_applies`)."""


def knee_text(qps: float | None, is_lower_bound: bool) -> str:
    """`3,200`, `≥ 3,200` for a lower bound, or `none` when no rate held."""
    if qps is None:
        return "none"
    return f"{'≥ ' if is_lower_bound else ''}{qps:,.0f}"


def interval_text(target: Mapping[str, Any]) -> str:
    """` (9,600 to 11,200, 3 rounds)`, with an en dash: the knee's interval from
    summary.json's fields; empty for a summary written before knees had one."""
    rounds = target.get("knee_rounds") or 0
    if not rounds or target.get("knee_qps") is None:
        return ""
    low, high = target["knee_low_qps"] or 0, target["knee_high_qps"]
    if target.get("knee_method") == "bracket":
        return " (one round)" if high is None else f" (one round; below {high:,.0f})"
    span = f"{low:,.0f} and up" if high is None else f"{low:,.0f}{DASH}{high:,.0f}"
    return f" ({span}, {rounds} rounds)"


def answer(name: str, target: Mapping[str, Any], slo_ms: float) -> str:
    """One sentence per target from its summary.json entry: how much it holds, and why
    the number is a bound when it is one."""
    subject = "the live split" if name == SPLIT else name
    knee = target["knee_qps"]
    steps = [s for s in target["steps"] if s["phase"] == "sweep"]
    if knee is None:
        lowest = min(steps, key=lambda s: s["target_qps"], default=None)
        if lowest is None:
            return f"{subject} was not swept."
        return (
            f"{subject} held none of the rates tried at p99 ≤ {slo_ms:g} ms: the lowest, "
            f"{lowest['target_qps']:,.0f}/s, {_failure(lowest)}."
        )
    held = (
        f"{subject} holds {knee_text(knee, target['knee_is_lower_bound'])} req/s"
        f"{interval_text(target)}"
    )
    sentence = f"{held} at p99 ≤ {slo_ms:g} ms on one replica"
    # A rate measured again counts by its last step, as in the knee (loadtests/sweep/
    # knee.py): a retried rate that then held is not the rate that failed.
    steps = [s for s in steps if s.get("round", 1) == _median_round(target)]
    latest = {s["target_qps"]: s for s in steps}.values()
    above = [s for s in latest if s["target_qps"] > knee and s["verdict"] != StepVerdict.HOLDS]
    failed = min(above, key=lambda s: s["target_qps"], default=None)
    if target["knee_is_lower_bound"]:
        reason = BOUND_REASONS.get(target["knee_limited_by"], target["knee_limited_by"])
        next_step = f" ({failed['target_qps']:,.0f}/s: {_verdict(failed)})" if failed else ""
        return f"{sentence}: a lower bound, since {reason}{next_step}."
    if failed:
        return f"{sentence}; at {failed['target_qps']:,.0f}/s it {_failure(failed)}{_slow(failed)}."
    return f"{sentence}."


def _median_round(target: Mapping[str, Any]) -> int:
    """The round the reported knee came from (1-based): the one whose knee it is."""
    knees = target.get("round_knees_qps") or [target["knee_qps"]]
    return knees.index(target["knee_qps"]) + 1 if target["knee_qps"] in knees else 1


def _slow(step: dict[str, Any]) -> str:
    """`, with the server's core at 0.71 of this run's fastest speed just before it`, when
    the core read slow before the step (it is read while idle, not during the step)."""
    speed = step.get("core_speed")
    if speed is None or not _slow_core(speed):
        return ""
    return f", with the server's core at {speed:.2f} of this run's fastest speed just before it"


def _verdict(step: dict[str, Any]) -> str:
    """The verdict, and for a generator-bound step what held the generator back."""
    if step["verdict"] != StepVerdict.GENERATOR_BOUND:
        return str(step["verdict"])
    return f"generator-bound; {_generator_remedy(step)}"


def _generator_remedy(step: dict[str, Any]) -> str:
    """What to do about a generator that fell behind, from its CPU and its late sends."""
    cpu, late = step.get("generator_cpu"), step.get("generator_late_share") or 0.0
    if cpu is not None and cpu >= GENERATOR_CPU_LIMIT:
        busy = f"its busiest process used {cpu:.2f} of a core"
        return f"{busy}: add generator processes or free cores"
    if cpu is not None and cpu < MOSTLY_IDLE_GENERATOR and late > 0:
        return (
            f"{late:.1%} of its sends left over {LATE_TOLERANCE_S * 1000:g} ms late while its "
            f"busiest process used {cpu:.2f} of a core: more likely the machine's delays than "
            "its own work, so repeat the sweep before adding generators"
        )
    return "add generator processes or free cores"


def _failure(step: dict[str, Any]) -> str:
    """What went wrong at a step, in words, with its p99."""
    p99 = f"p99 {_ms(step['p99_ms'])}"
    verdict = StepVerdict(step["verdict"])
    return {
        StepVerdict.MISSES_SLO: f"missed the SLO ({p99})",
        StepVerdict.SERVER_SATURATED: f"fell short of the rate: the server was saturated ({p99})",
        StepVerdict.GENERATOR_BOUND: "was generator-bound: the load generator fell behind, "
        f"which says nothing about the server ({_generator_remedy(step)})",
        StepVerdict.UNSTABLE: f"did not settle ({p99})",
        StepVerdict.TOO_FEW_ANSWERS: "had too few answers for a p99",
        StepVerdict.HOLDS: "held",
    }[verdict]


def conditions_sentence(conditions: dict[str, Any], settings: dict[str, Any]) -> str:
    """Where and how the answer was measured, as one paragraph."""
    cpus = conditions.get("logical_cpus") or 0
    server = placement(conditions.get("server_cpus"), cpus)
    generator = placement(conditions.get("generator_cpus"), cpus)
    shared = set(conditions.get("server_cpus") or []) & set(conditions.get("generator_cpus") or [])
    versions = _versions(conditions.get("model_versions", {}))
    return (
        f"Measured {conditions.get('date', '?')} on {conditions.get('cpu_model', '?')} "
        f"({cpus} logical CPUs); code {str(conditions.get('code_revision', '?'))[:12]}; "
        f"model {versions}. "
        f"Server on {server}, generator on {generator}"
        f"{' (they share CPUs, so they compete for them)' if shared else ''}. "
        f"Steps of at least {settings['step_seconds']:g} s (up to "
        f"{settings['max_step_seconds']:g} s until throughput and p99 settle), "
        f"{settings['window_seconds']:g} s windows, {settings['arrivals']} arrivals, "
        f"{settings.get('engine', 'locust')} engine, {settings['rows_per_request']} row(s) "
        f"per request, against {settings['url']}. {core_speed_sentence(conditions)}"
    ).rstrip()


def core_speed_sentence(conditions: dict[str, Any]) -> str:
    """How steady the server's core ran over the sweep, from `conditions["core_speed"]`
    (see loadtests/sweep/runner.py); empty when it was not read. The warning goes by how
    far the rounds' medians moved apart, which is what moves a knee; a single slow
    reading is shown but does not raise it."""
    read = conditions.get("core_speed")
    if not read:
        return ""
    text = (
        f"The server's core (CPU {read['cpu']}), read with a fixed loop while idle before "
        f"each step, ran at {read['slowest_share']:.2f} to 1.00 of its fastest speed in this run"
    )
    moved = read.get("between_rounds_share")
    if moved is not None:
        text += f", and its slowest round's median at {moved:.2f} of its fastest round's"
    if _slow_core(read["slowest_share"] if moved is None else moved):
        text += (
            ": the machine's own speed moved, and a knee moves with it, so repeat the sweep "
            'before comparing knees (docs/PERFORMANCE.md, "The host\'s own speed")'
        )
    return text + "."


def _slow_core(share: float) -> bool:
    """Under `SLOW_CORE` as printed (two decimals), so 0.899 does not read "0.90" as slow."""
    return round(share, 2) < SLOW_CORE


def _versions(by_variant: dict[str, str]) -> str:
    """`v1 (every variant)` when they agree, else `a v1, b v2`."""
    distinct = set(by_variant.values())
    if not distinct:
        return "version unknown"
    if len(distinct) == 1:
        return f"{distinct.pop()} (every variant)"
    return ", ".join(f"{name} {version}" for name, version in by_variant.items())


def queue_model_applies(utilizations: Sequence[float]) -> bool:
    """Whether the M/D/c queue model describes the measured wait: only once the runner is
    busy for a real share of the time. A runner that is hardly ever busy (an ONNX model
    answering in microseconds) leaves requests waiting for the event loop, which parses,
    batches and answers them, not for the model: the model would predict ~0 there."""
    known = [u for u in utilizations if not math.isnan(u)]
    return max(known, default=0.0) >= QUEUE_MODEL_MIN_UTILIZATION


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"
