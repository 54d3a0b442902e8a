"""Where the time goes, from the sweep's report: links to the profiles (`perfserve
profile`) made of the sweep's variants, and the commands that make them at 50% and 90% of
each knee.

A knee says how much load a replica holds; a profile says what its CPU was spent on at
that load. The report finds profiles in its own folder and in the folders beside it
(`reports/profile` next to `reports/demo`), so a profile made before the report is
written is linked; one made after shows up when the sweep is run again.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILE_JSON = "profile.json"
"""The summary every `perfserve profile --out` folder holds (perfserve/benchmarks/profile)."""
SHARES_OF_KNEE = (0.5, 0.9)
"""Where to profile: half the knee (the server at ease) and near it (where the queue forms)."""
PROFILE_SECONDS = 20
SAMPLE_RATE = 250
"""py-spy samples per second for profiles near a knee: each sample stops the server, and
at the default 1,000 a second the stops cost it a fifth or more of its throughput there
(docs/PERFORMANCE.md, "Where a replica's CPU goes")."""
UNATTRIBUTED = "other"


@dataclass(frozen=True)
class ProfileLink:
    """One profile of a variant the sweep measured."""

    variant: str
    rate: float
    us_per_request: float
    top_stage: str
    folder: Path
    """Relative to the report's folder, for links."""


def find_profiles(report_dir: Path, variants: list[str]) -> list[ProfileLink]:
    """The profiles of `variants` in `report_dir` and beside it, by variant and rate."""
    paths = {*report_dir.glob(f"*/{PROFILE_JSON}"), *report_dir.parent.glob(f"*/{PROFILE_JSON}")}
    links = [_link(path, report_dir) for path in sorted(paths)]
    found = [link for link in links if link is not None and link.variant in variants]
    return sorted(found, key=lambda link: (variants.index(link.variant), link.rate))


def profile_commands(summary: dict[str, Any], report_dir: Path) -> list[str]:
    """`perfserve profile` at 50% and 90% of each variant's knee, writing beside the report."""
    store = summary["settings"].get("store", "model_store")
    commands = []
    for variant, target in summary["variants"].items():
        if not target.get("knee_qps"):
            continue
        for share in SHARES_OF_KNEE:
            rate = _two_figures_down(target["knee_qps"] * share)
            out = report_dir.parent / f"profile-{variant}-{share:.0%}".replace("%", "")
            commands.append(
                f"perfserve profile --variant {variant} --rate {rate:.0f} "
                f"--seconds {PROFILE_SECONDS} --sample-rate {SAMPLE_RATE} --store {store} "
                f"--out {out}"
            )
    return commands


def _two_figures_down(rate: float) -> float:
    """`rate` cut to two significant figures, down, so 90% of a knee stays under it."""
    step = 10 ** max(0, math.floor(math.log10(rate)) - 1)
    return float(math.floor(rate / step) * step)


def _link(path: Path, report_dir: Path) -> ProfileLink | None:
    """The profile at `path`, or None when it is not one `perfserve profile` wrote."""
    try:
        data = json.loads(path.read_text())
        settings, table = data["settings"], data["table"]
        stages: dict[str, float] = table["us_per_request"]
        return ProfileLink(
            variant=settings["variant"],
            rate=float(settings["rate"]),
            us_per_request=float(table["measured_us"]),
            top_stage=_largest_stage(stages, float(table["measured_us"])),
            folder=Path(_relative(path.parent, report_dir)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _largest_stage(stages: dict[str, float], measured_us: float) -> str:
    """The stage that cost most, with its share (`other`, what no stage claimed, is not
    a stage to act on and is left out)."""
    named = {stage: us for stage, us in stages.items() if stage != UNATTRIBUTED}
    stage = max(named, key=lambda name: named[name])
    return f"{stage} ({named[stage] / measured_us:.0%})" if measured_us > 0 else stage


def _relative(folder: Path, report_dir: Path) -> str:
    """`folder` as a link from the report: `profile` inside it, `../profile` beside it."""
    if folder.parent.resolve() == report_dir.resolve():
        return folder.name
    return f"../{folder.name}"
