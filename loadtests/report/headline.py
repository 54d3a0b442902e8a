"""The sentences at the top of every view of a sweep, from summary.json's contents.

In this order: whether the run can support its numbers at all (`conclusive`); how the
variants compare (a ranking only where a comparison found a difference, otherwise "the
same load within this run's resolution"); each variant's knee with its interval; and
what the knee measured, when the model runner was mostly idle at it (the knee then
ranks the HTTP path, not the models). A run that is not conclusive prints no knee here.
"""

from __future__ import annotations

from typing import Any

from loadtests import SPLIT
from loadtests.report.answer import QUEUE_MODEL_MIN_UTILIZATION, answer

SAME_LOAD = "hold the same load within this run's resolution"


def headline(document: dict[str, Any]) -> list[str]:
    """The top sentences, each a paragraph of its own."""
    slo = document["slo_p99_ms"]
    variants: dict[str, Any] = document["variants"]
    if not document.get("conclusive", True):
        return [
            f"This run is not conclusive: {document['inconclusive_reason']}. It gives no "
            "knee as an answer: repeat it on a quieter machine, or with more rounds "
            "(--rounds), before reading a capacity from it. Its comparisons stand: the "
            "variants took turns step by step, so the drift hit each alike.",
            *_comparisons(document.get("comparisons", [])),
            *filter(None, [http_path_note(variants)]),
        ]
    lines = _comparisons(document.get("comparisons", []))
    lines += [answer(name, target, slo) for name, target in variants.items()]
    if note := http_path_note(variants):
        lines.append(note)
    return lines


def _comparisons(comparisons: list[dict[str, Any]]) -> list[str]:
    """One sentence for the pairs that do not differ, one per pair that does."""
    same = [c for c in comparisons if c["verdict"] == "not_different"]
    lines = []
    if same:
        names = list(dict.fromkeys(n for c in same for n in (c["baseline"], c["candidate"])))
        widths = [_resolution(c) for c in same]
        width = "" if None in widths else f", ±{max(w or 0.0 for w in widths):.0%}"
        rounds = min(c["rounds"] for c in same)
        why = " (one round: a verdict needs two or more, --rounds)" if rounds < 2 else ""
        if len(same) == len(_pairs(names)):
            lines.append(f"{_names(names)} {SAME_LOAD}{width}{why}, so they are not ranked.")
        else:  # some pairs only: naming all their variants together would read as all
            lines.append(
                f"These pairs each {SAME_LOAD}{width}{why}, so neither of a pair is ranked "
                f"above the other: {_pair_list(same)}."
            )
    for c in comparisons:
        if c["verdict"] == "not_different":
            continue
        more = "more" if c["verdict"] == "higher" else "less"
        near, far = (c["ci_low"], c["ci_high"]) if more == "more" else (c["ci_high"], c["ci_low"])
        span = f"at least {abs(near):.0%}" if far is None else f"{abs(near):.0%} to {abs(far):.0%}"
        lines.append(
            f"{_subject(c['candidate'])} holds {abs(c['difference']):.0%} {more} load than "
            f"{_subject(c['baseline'])} ({span} {more}, 95% confidence, "
            f"{c['rounds']} interleaved rounds)."
        )
    return lines


def _resolution(comparison: dict[str, Any]) -> float | None:
    low, high = comparison["ci_low"], comparison["ci_high"]
    return None if low is None or high is None else max(abs(low), abs(high))


def _pairs(names: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def _pair_list(comparisons: list[dict[str, Any]]) -> str:
    return "; ".join(f"{c['baseline']} and {c['candidate']}" for c in comparisons)


def _names(names: list[str]) -> str:
    shown = [_subject(n) for n in names]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + f" and {shown[-1]}"


def _subject(name: str) -> str:
    return "the live split" if name == SPLIT else name


def http_path_note(variants: dict[str, Any]) -> str:
    """When the model runner was mostly idle at every knee, that the knees rank the HTTP
    path (parsing, batching, answering on the event loop), not the models."""
    busy = [
        t["runner_utilization_at_knee"]
        for t in variants.values()
        if t.get("runner_utilization_at_knee") is not None
    ]
    if not busy or max(busy) >= QUEUE_MODEL_MIN_UTILIZATION:
        return ""
    return (
        f"At every knee the model runner was at most {max(busy):.0%} busy: these knees "
        "measure the HTTP path (parsing, batching and answering on the event loop), not "
        "the models, so they rank the variants' HTTP handling; `perfserve bench` ranks "
        "the models themselves."
    )
