"""The service's Prometheus metrics: their definitions, the folding that keeps the hot
path's updates cheap, and the exposition (merged across workers)."""

from service.metrics.definitions import (
    CacheMetrics,
    Metrics,
    VariantMetrics,
    multiprocess_mode,
    new_registry,
)
from service.metrics.exposition import exposition, workers_with_all_variants
from service.metrics.folding import FLUSH_INTERVAL_S, FoldedCounter, FoldedHistogram, Folding

__all__ = [
    "FLUSH_INTERVAL_S",
    "CacheMetrics",
    "FoldedCounter",
    "FoldedHistogram",
    "Folding",
    "Metrics",
    "VariantMetrics",
    "exposition",
    "multiprocess_mode",
    "new_registry",
    "workers_with_all_variants",
]
