"""Sampled stacks in the collapsed form (`frame;frame;frame count` a line), as py-spy
writes them with `--format raw`, and the same samples as a speedscope file.

One recording gives every output: the per-stage table and the flame graphs are computed
from the collapsed stacks, and the speedscope file (https://www.speedscope.app, also
opened by other viewers) is written from them too, so the profiler runs once per window.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

Stacks = Counter[tuple[str, ...]]
"""Sample counts by stack, frames from the outermost to the innermost."""


THREAD_ID = re.compile(r"^thread \(\d+\): ")


def without_thread_id(stack: tuple[str, ...]) -> tuple[str, ...]:
    """The stack with its thread named but not numbered (`thread: MainThread`), so the
    same thread of two server processes is one stack in a comparison."""
    if not stack:
        return stack
    return (THREAD_ID.sub("thread: ", stack[0]), *stack[1:])


def parse_collapsed(text: str) -> Stacks:
    stacks: Stacks = Counter()
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def read_collapsed(path: Path) -> Stacks:
    return parse_collapsed(path.read_text(errors="replace"))


def write_collapsed(stacks: Stacks, path: Path) -> None:
    lines = [f"{';'.join(stack)} {count}" for stack, count in sorted(stacks.items())]
    path.write_text("\n".join(lines) + "\n")


def write_weights(weights: dict[tuple[str, ...], float], path: Path) -> None:
    """Stacks with their cost (µs per request) in the collapsed form, count as a decimal."""
    lines = [f"{';'.join(stack)} {weight:.6f}" for stack, weight in sorted(weights.items())]
    path.write_text("\n".join(lines) + "\n")


def read_weights(path: Path) -> dict[tuple[str, ...], float]:
    weights: dict[tuple[str, ...], float] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, weight = line.rpartition(" ")
        if stack:
            weights[tuple(stack.split(";"))] = float(weight)
    return weights


def speedscope(stacks: Stacks, name: str, sample_interval_s: float) -> dict[str, Any]:
    """A speedscope document of one sampled profile: each stack once, weighted by its
    count times the sampling interval (in seconds), so its total reads as CPU time."""
    frames: dict[str, int] = {}
    samples: list[list[int]] = []
    weights: list[float] = []
    for stack, count in sorted(stacks.items()):
        samples.append([frames.setdefault(frame, len(frames)) for frame in stack])
        weights.append(count * sample_interval_s)
    total = sum(weights)
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": [_frame(frame) for frame in frames]},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "seconds",
                "startValue": 0,
                "endValue": total,
                "samples": samples,
                "weights": weights,
            }
        ],
        "name": name,
        "exporter": "perfserve profile",
    }


def write_speedscope(stacks: Stacks, name: str, sample_interval_s: float, path: Path) -> None:
    path.write_text(json.dumps(speedscope(stacks, name, sample_interval_s)))


def _frame(frame: str) -> dict[str, Any]:
    function, _, where = frame.partition(" (")
    path, _, line = where.rstrip(")").rpartition(":")
    if not path or not line.isdigit():
        return {"name": frame}
    return {"name": function, "file": path, "line": int(line)}
