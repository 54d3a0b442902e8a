"""Comparing variants on live traffic: the shadow variant's sampled copies and the
running rollout's evidence, with this process's rollout replica and the folder it shares
(docs/canary.md).

The request path hands it what it served (`Serving.mirror`, `Serving.record_evidence`);
the admin routes and the lifespan use the rest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np

from service.batching import BatchResult
from service.metrics import Metrics
from service.rollout.replica import RolloutReplica
from service.serving import LoadedVariant
from service.settings import Settings
from service.shadow import Compared, ShadowMirror
from service.supervision import LoopHealth
from service.traffic import Traffic


class Canary:
    """The shadow mirror and the rollout replica of one process. `variants` is the
    process's dict of loaded variants (`VariantLoader.variants`), the shadow's batcher
    looked up in it."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        health: LoopHealth,
        traffic: Traffic,
        variants: dict[str, LoadedVariant],
    ) -> None:
        self.traffic = traffic
        self.variants = variants
        self.shadow = ShadowMirror(
            metrics,
            settings.shadow_share,
            settings.shadow_tolerance,
            settings.request_timeout_ms / 1000,
            settings.routing_seed,
            health,
        )
        self._private_folder: Path | None = None
        self.rollouts = RolloutReplica(
            self._rollout_folder(),
            metrics,
            settings.rollout_max_samples,
            settings.rollout_samples_per_user,
            traffic.set,
            traffic.version,
            settings.rollout_takeover_s,
        )

    def mirror(
        self, served: str, rows: np.ndarray, result: BatchResult, evidence: bool = False
    ) -> None:
        """After `served` answered a routed request: a sampled copy to the shadow variant
        (see service/shadow.py); with `evidence`, compared rows also feed the running
        rollout's evidence."""
        shadow = self.traffic.router.split.shadow
        if shadow is None or shadow == served or (loaded := self.variants.get(shadow)) is None:
            return
        on_compared = self._record_comparison if evidence else None
        self.shadow.mirror(loaded.batcher, rows, result, on_compared)

    def record_evidence(
        self, variant: str, user_id: bytes | None, elapsed_s: float, status: int
    ) -> bool:
        """A request the split routed to `variant`, as the running rollout's evidence when
        one runs and this user's share of the window is not used up (see
        `SampleRecorder.admit`); whether it counted."""
        recorder = self.rollouts.recorder
        if not (recorder.active and recorder.admit(user_id)):
            return False
        recorder.record(variant, elapsed_s, status)
        return True

    def discard(self) -> None:
        """Remove the private rollout folder, if this process made one."""
        if self._private_folder is not None:
            shutil.rmtree(self._private_folder, ignore_errors=True)

    def _record_comparison(self, compared: Compared) -> None:
        self.rollouts.recorder.compare(*compared)

    def _rollout_folder(self) -> Path:
        """Next to the shared split file, so every replica following it shares the rollout;
        a lone process without one, or one that only follows a read-only split (which no
        rollout can change), keeps its rollout in a private folder, named here but created
        only when a rollout writes to it (a Service built only to check settings, as
        `serve --workers N` does first, leaves nothing behind) and removed at stop."""
        split = self.traffic.split
        if split.file is not None and not split.read_only:
            path = split.file.path
            return path.with_name(f"{path.stem}.rollout")
        name = f"perfserve-rollout-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._private_folder = Path(tempfile.gettempdir()) / name
        return self._private_folder
