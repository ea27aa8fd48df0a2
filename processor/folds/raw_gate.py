"""Which raw samples the sink stores: exactly those the worker folds into its rollups, so the raw
table and the rollups hold the same samples (live and in replay). Pure."""

from __future__ import annotations

from processor.folds.config import FoldConfig
from processor.folds.metrics_core import admission_limit
from processor.folds.routing import home_of
from schemas.events import MetricRecorded


class RawSampleGate:
    """Admits a raw sample unless the worker refuses it as late: the worker's own rule
    (:func:`processor.folds.metrics_core.admission_limit`), judged by the stream time of the sample's lane
    of its partition, applied to the same offsets."""

    def __init__(
        self,
        fold: FoldConfig,
        stream_times: dict[int, int],
        derived_times: dict[int, int] | None = None,
        partitions: int | None = None,
    ) -> None:
        self._fold = fold
        self.stream_times = dict(stream_times)
        """Per partition: the raw lane's stream time."""
        self.derived_times = dict(derived_times or {})
        """Per partition: the derived lane's stream time."""
        self.partitions = partitions
        """The metrics topic's partition count (``None``: every sample is at home)."""

    def misrouted(self, partition: int, sample: MetricRecorded) -> bool:
        """Not on its series' partition: the worker forwarded it, and the copy is what counts."""
        return self.partitions is not None and home_of(sample, self.partitions) != partition

    def admit(self, partition: int, sample: MetricRecorded) -> bool:
        derived, refused_from = admission_limit(self._fold, sample)
        times = self.derived_times if derived else self.stream_times
        stream_time = times.get(partition, 0)
        if refused_from <= stream_time:
            return False
        times[partition] = max(stream_time, sample.occurred_at)
        return True
