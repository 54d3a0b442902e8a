"""The traffic split this process routes by: its router, the split file it shares with
every replica and worker following it (service/shared_split.py), and changes to it.

`Traffic.set` is how `PUT /traffic` and a rollout's steps change the split; the request
path only asks the router for a variant (`Serving.choose`).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from perfserve_common.usage import UsageError, validation_message
from service.metrics import Metrics
from service.routing import Router, TrafficSplit, UnknownVariant
from service.settings import Settings
from service.shared_split import SharedSplit
from service.store import Manifest

log = logging.getLogger("perfserve")


class Traffic:
    """The live split over the variants `names`: the settings' (`--traffic`, `--shadow`;
    else all to the store's reference variant), or the split file's when it has one."""

    def __init__(
        self, names: list[str], manifest: Manifest, settings: Settings, metrics: Metrics
    ) -> None:
        self.names = names
        self.settings = settings
        self.metrics = metrics
        try:
            self.router = Router(names, self._initial(manifest), settings.routing_seed)
        except UnknownVariant as error:
            raise UsageError(f"--traffic/--shadow: {error}") from None
        self.split = SharedSplit(self.router, settings.split_file, self._changed)
        self._start()

    def set(self, split: TrafficSplit) -> int:
        """Apply a new split here and in every process following the split file; its
        version. Raises UnknownVariant for a variant this service does not serve."""
        version = self.split.set(split)
        log.warning(
            "traffic split version %d set: weights %s, shadow %s",
            version,
            split.weights,
            split.shadow,
        )
        return version

    def version(self) -> int:
        """The version of the split this process routes by."""
        return self.split.current[1]

    def variants(self) -> list[str]:
        """The variants the live split names, whatever their weight."""
        return list(self.router.split.weights)

    def _initial(self, manifest: Manifest) -> TrafficSplit:
        names = self.names
        default = manifest.reference if manifest.reference in names else names[0]
        weights = self.settings.traffic or {default: 1.0}
        return TrafficSplit(weights=weights, shadow=self.settings.shadow)

    def _start(self) -> None:
        """Start from the split file's split when it has one (see service/shared_split.py)."""
        path = self.settings.split_file
        try:
            from_file = self.split.start(self.router.split)
        except ValidationError as error:
            raise UsageError(f"--split-file {path}: {validation_message(error, str)}") from None
        except (OSError, ValueError) as error:
            raise UsageError(f"--split-file {path}: {error}") from None
        if from_file and self.settings.traffic is not None:
            log.warning("following the split in %s; --traffic is ignored", path)

    def _changed(self, split: TrafficSplit, version: int) -> None:
        for name in self.names:
            self.metrics.traffic_weight.labels(name).set(split.weights.get(name, 0.0))
        self.metrics.split_version.set(version)
        log.info("following traffic split version %d", version)
