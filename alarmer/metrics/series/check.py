"""Offline check (and repair) of every stored series: ``alarmer check``.

Scans every log of the configured series driver with the engine's own
rules (:meth:`~alarmer.metrics.series.store.SeriesStore.inspect`),
counts damage per kind and, when asked, repairs what is damaged
(:meth:`~alarmer.metrics.series.store.SeriesStore.repair`: the damaged
log is set aside and kept).  Series whose metric is not in the metric
index are reported as orphans (metrics of the index without a series
are fine: nothing was written to them yet).  The index is reached
through a callable, so this module stays below the index.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import IO

from alarmer.metrics.series import store as store_mod

LOG = logging.getLogger(__name__)

#: Metric ids looked up in the index at once.
INDEX_BATCH = 500

#: Which of some metric ids the metric index holds.
IndexLookup = Callable[[Sequence[str]], Collection[str]]


@dataclasses.dataclass
class Report:
    """What a check found, and what it repaired."""

    #: What was checked (the driver and where its data is).
    storage: str
    checked: int = 0
    #: Every damaged series found (before any repair).
    damaged: list[store_mod.Finding] = dataclasses.field(default_factory=list)
    #: The repairs done (``--repair``).
    repaired: list[store_mod.Finding] = dataclasses.field(default_factory=list)
    #: (metric id, error) of series whose repair failed.
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: Series without an entry in the metric index.
    orphans: list[str] = dataclasses.field(default_factory=list)
    #: Repairs recorded in the damage journal before this check.
    journal_before: int = 0

    def by_kind(self) -> dict[str, int]:
        """Number of damaged series showing each kind of damage."""
        kinds: collections.Counter[str] = collections.Counter()
        for finding in self.damaged:
            kinds.update({d.kind for d in finding.damage})
        return dict(sorted(kinds.items()))

    @property
    def unrepaired(self) -> list[str]:
        """Ids of the damaged series left damaged."""
        fixed = {f.metric_id for f in self.repaired}
        return [f.metric_id for f in self.damaged if f.metric_id not in fixed]

    def exit_code(self) -> int:
        """1 when damage was found and not repaired, else 0."""
        return 1 if self.unrepaired else 0


def _progress(items: list[str], stream: IO[str] | None) -> Iterable[str]:
    """*items*, with a progress bar on *stream* when it is a terminal."""
    if stream is None or not stream.isatty():
        return items
    try:
        # Third-party, and only ever needed on a terminal.
        from tqdm import tqdm  # type: ignore[import-untyped]
    except ImportError:  # an incomplete installation: check without it
        LOG.warning("tqdm is not installed: no progress bar")
        return items
    return tqdm(items, file=stream, unit="series", desc="checking")


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_series(
    series: store_mod.SeriesStore,
    in_index: IndexLookup | None,
    *,
    repair: bool = False,
    progress: IO[str] | None = None,
    storage: str = "",
) -> Report:
    """Check every stored series; repair the damaged ones if asked.

    :param in_index: which of some metric ids the metric index holds
        (None: no orphan check).
    :param progress: where to draw a progress bar, when a terminal.
    """
    report = Report(
        storage=storage or type(series.driver).__name__,
        journal_before=len(series.driver.damage_journal()),
    )
    ids = sorted(series.driver.list_series())
    if in_index is not None:
        for batch in _batches(ids, INDEX_BATCH):
            known = set(in_index(batch))
            report.orphans.extend(m for m in batch if m not in known)
    for metric_id in _progress(ids, progress):
        finding = series.inspect(metric_id)
        if finding is None:
            continue  # deleted meanwhile
        report.checked += 1
        if not finding.damaged:
            continue
        report.damaged.append(finding)
        if not repair:
            continue
        try:
            done = series.repair(metric_id)
        except Exception as exc:  # report it, go on with the others
            LOG.exception("metric %s: repair failed", metric_id)
            report.failed.append((metric_id, str(exc)))
            continue
        if done is not None:
            report.repaired.append(done)
    return report


def format_report(report: Report) -> str:
    """The report as ``alarmer check`` prints it."""
    lines = [
        f"storage: {report.storage}",
        f"series checked: {report.checked}",
        f"damaged series: {len(report.damaged)}",
    ]
    for kind, count in report.by_kind().items():
        lines.append(f"  {kind}: {count}")
    for finding in report.damaged:
        what = "; ".join(f"{d.kind}: {d.detail}" for d in finding.damage)
        lines.append(
            f"  {finding.metric_id} ({finding.where}): {what}; "
            f"{finding.kept} of {finding.frames} frames recoverable, "
            f"{finding.points} points"
        )
    if report.repaired or report.failed:
        lines.append(f"repaired: {len(report.repaired)}")
        for finding in report.repaired:
            lines.append(
                f"  {finding.metric_id}: kept {finding.kept} of "
                f"{finding.frames} frames; damaged log kept at "
                f"{finding.aside}"
            )
        for metric_id, error in report.failed:
            lines.append(f"  {metric_id}: NOT repaired: {error}")
    lines.append(
        f"orphans (series without a metric in the index): "
        f"{len(report.orphans)}"
    )
    lines.extend(f"  {metric_id}" for metric_id in report.orphans)
    lines.append(
        f"repairs recorded before this check: {report.journal_before}"
    )
    unrepaired = report.unrepaired
    if unrepaired:
        lines.append(
            f"{len(unrepaired)} damaged series not repaired "
            "(run again with --repair)"
            if not report.failed
            else f"{len(unrepaired)} damaged series not repaired"
        )
    return "\n".join(lines) + "\n"
