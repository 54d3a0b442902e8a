"""The full `/metrics` text of one process, rendered at a fraction of prometheus_client's
cost: the same bytes as `generate_latest`, from text built once per series.

`generate_latest` builds a `Sample` per line, then validates, escapes, sorts and formats
every name and label again on every scrape: about 5 ms for the service's 600 lines, on
the one core the event loop serves predictions with (a rendering thread holds the GIL
just the same). Here each series gets a template, written once by `generate_latest`
itself with its values left blank, so only the values are formatted per scrape; the
service's own counters, gauges and histograms are read straight from their values, and
a series whose values have not moved since the last scrape keeps its text.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from itertools import accumulate
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# How one series' values are read: the values of the samples `generate_latest` writes
# for it, in its order.
Reader = Callable[[Any], list[float]]


class Renderer:
    """Renders one process's registry (not the merged registry of several workers)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._families: dict[int, _Family | None] = {}
        self._templates: dict[Hashable, str | None] = {}

    def render(self) -> bytes:
        """All of the registry's metrics, as `generate_latest(registry)` would write them."""
        parts: list[str] = []
        for collector in self._collectors():
            family = self._family(collector)
            if family is None:  # a collector of its own (process, GC, platform)
                parts.extend(self._collected(collector))
            else:
                parts.extend(family.lines())
        return "".join(parts).encode()

    def _collectors(self) -> list[Any]:
        # prometheus_client keeps the registered collectors in this private map only.
        with self.registry._lock:
            return list(self.registry._collector_to_names)

    def _family(self, collector: Any) -> _Family | None:
        key = id(collector)
        if key not in self._families:
            self._families[key] = _Family.of(collector)
        return self._families[key]

    def _collected(self, collector: Any) -> Iterator[str]:
        """A collector's metrics, each through its template (kept by name and labels)."""
        for metric in collector.collect():
            samples = metric.samples
            key = (metric.name, metric.type, *((s.name, *s.labels.items()) for s in samples))
            if key not in self._templates:
                self._templates[key] = _template(metric, samples, header=True)
            template = self._templates[key]
            if template is None:
                yield generate_latest(_Collected(metric, samples)).decode()
            else:
                yield template % tuple(_go_float(float(s.value)) for s in samples)


class _Family:
    """One metric's header and its series (one per label set), each rendered lazily."""

    def __init__(self, metric: Any, read: Reader) -> None:
        self.metric = metric
        self.read = read
        self.header = generate_latest(_Collected(metric.describe()[0], [])).decode()
        self.series: dict[tuple[str, ...], _Series] = {}

    @classmethod
    def of(cls, collector: Any) -> _Family | None:
        """The family for a metric whose values can be read directly, else None."""
        read = _reader(collector)
        return None if read is None else cls(collector, read)

    def lines(self) -> Iterator[str]:
        yield self.header
        for labels, child in self._children():
            series = self.series.get(labels)
            if series is None:
                series = self.series[labels] = _Series(self.metric, labels, child)
            yield series.text(self.read(child))

    def _children(self) -> list[tuple[tuple[str, ...], Any]]:
        if not self.metric._labelnames:
            return [((), self.metric)]
        with self.metric._lock:
            return list(self.metric._metrics.items())


class _Series:
    """One label set's lines: its template, and its last text with the values it shows."""

    __slots__ = ("_template", "_text", "_values")

    def __init__(self, metric: Any, labels: tuple[str, ...], child: Any) -> None:
        named = dict(zip(metric._labelnames, labels, strict=True))
        samples = [
            s._replace(name=metric._name + s.name, labels={**named, **s.labels})
            for s in child._samples()
        ]
        template = _template(metric.describe()[0], samples, header=False)
        if template is None:  # not for the metrics `_reader` accepts
            raise ValueError(f"{metric._name}: a series without a plain line per sample")
        self._template = template
        self._values: list[float] | None = None
        self._text = ""

    def text(self, values: list[float]) -> str:
        if values != self._values:
            self._text = self._template % tuple(map(_go_float, values))
            self._values = values
        return self._text


class _Collected:
    """A collector of one metric with the given samples, for `generate_latest`."""

    def __init__(self, metric: Metric, samples: list[Sample]) -> None:
        self.metric = Metric(metric.name, metric.documentation, metric.type, metric.unit)
        self.metric.samples = samples

    def collect(self) -> Iterable[Metric]:
        return [self.metric]


def _template(metric: Metric, samples: list[Sample], header: bool) -> str | None:
    """What `generate_latest` writes for `samples` of `metric`, with `%s` for each value
    (and its header lines if `header`); None where its lines are not one per sample, in
    order, ending with the value (timestamps, OpenMetrics-only samples)."""
    blank = [s._replace(value=0.0) for s in samples]
    lines = generate_latest(_Collected(metric, blank)).decode().splitlines()
    head, body = lines[:2], lines[2:]
    if len(body) != len(samples) or any(s.timestamp is not None for s in samples):
        return None
    kept = [line.replace("%", "%%") + "\n" for line in head] if header else []
    kept += [line.rsplit(" ", 1)[0].replace("%", "%%") + " %s\n" for line in body]
    return "".join(kept)


def _reader(collector: Any) -> Reader | None:
    """How to read a counter, gauge or histogram's values, or None for any other
    collector, a gauge read through a function, or `_created` series (not served)."""
    if prometheus_metrics._use_created:
        return None
    if isinstance(collector, Histogram) and collector._upper_bounds[0] >= 0:
        return _histogram_values
    if isinstance(collector, Counter):
        return _value
    if isinstance(collector, Gauge) and "_child_samples" not in vars(collector):
        return _value
    return None


def _go_float(value: float) -> str:
    """`floatToGoString`, its common case first: a float under a million in magnitude is
    written as Python's `repr` writes it."""
    if -1e6 < value < 1e6:
        return repr(value)
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


# The values are read from prometheus_client's single-process `MutexValue`s without their
# locks (`get` takes one per value, a third of a scrape): reading a float attribute is
# atomic, and buckets read under one lock each were no more consistent with one another.


def _value(child: Any) -> list[float]:
    return [child._value._value]


def _histogram_values(child: Any) -> list[float]:
    """Cumulative bucket counts, the count, then the sum (as `Histogram` samples them)."""
    counts = list(accumulate([bucket._value for bucket in child._buckets]))
    return [*counts, counts[-1], child._sum._value]
