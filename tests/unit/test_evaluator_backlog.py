"""The order in which waiting event jobs reach the evaluator's ticks."""

from __future__ import annotations

import dataclasses

from alarmer.evaluator.backlog import EventBacklog


@dataclasses.dataclass
class Job:
    alarm: str
    first: int
    stamp: int = 0


def merge(waiting: Job, newer: Job) -> None:
    waiting.first = min(waiting.first, newer.first)
    waiting.stamp = max(waiting.stamp, newer.stamp)


def make(chunk: int = 4) -> EventBacklog[Job]:
    return EventBacklog(lambda j: j.alarm, merge, chunk=chunk)


def jobs(prefix: str, count: int, first: int = 0) -> list[Job]:
    return [Job(f"{prefix}{k}", first) for k in range(count)]


def names(taken: list[Job]) -> list[str]:
    return [j.alarm for j in taken]


def test_nothing_waiting_a_tick_takes_everything_it_holds():
    backlog = make()
    assert names(backlog.take(jobs("a", 3))) == ["a0", "a1", "a2"]
    assert len(backlog) == 0
    # A wave: the first chunk now, the rest waits in arrival order.
    assert names(backlog.take(jobs("w", 10))) == ["w0", "w1", "w2", "w3"]
    assert len(backlog) == 6


def test_a_fresh_crossing_during_a_wave_is_in_the_next_tick():
    backlog = make()
    backlog.take(jobs("w", 10))
    taken = names(backlog.take([Job("crossing", 5)]))
    assert taken[0] == "crossing"
    # The rest of the tick goes to the oldest of the wave.
    assert taken[1:] == ["w4", "w5", "w6"]


def test_old_jobs_are_reached_under_an_endless_stream_of_fresh_ones():
    backlog = make(chunk=4)
    backlog.take(jobs("old", 8))  # 4 taken, 4 wait
    reached: set[str] = set()
    for tick in range(6):
        # More fresh jobs each tick than a tick holds.
        reached.update(names(backlog.take(jobs(f"t{tick}-", 6))))
    assert {f"old{k}" for k in range(4, 8)} <= reached
    # Fresh jobs beyond their share did not jump ahead of them: the
    # stream's overflow joined the end of the line.
    taken = names(backlog.take([]))
    assert not any(name.startswith("old") for name in taken)


def test_an_alarm_announced_again_keeps_its_place():
    backlog = make(chunk=2)
    backlog.take([Job("a", 10), Job("b", 10), Job("c", 10, 7), Job("d", 10)])
    # "c" waits; announced again with newer data, it is not queued twice
    # and keeps its earliest instant with the newest data timestamp.
    taken = backlog.take([Job("c", 30, 9)])
    assert names(taken) == ["c", "d"]
    assert (taken[0].first, taken[0].stamp) == (10, 9)
    assert len(backlog) == 0


def test_duplicates_within_one_fresh_batch_are_one_job():
    backlog = make()
    taken = backlog.take([Job("a", 5), Job("a", 3, 4), Job("b", 6)])
    assert names(taken) == ["a", "b"]
    assert (taken[0].first, taken[0].stamp) == (3, 4)
