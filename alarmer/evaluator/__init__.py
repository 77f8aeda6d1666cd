"""The evaluator: decides each alarm's state from the engine's aggregates.

:mod:`~alarmer.evaluator.decide` (threshold decision) and
:mod:`~alarmer.evaluator.composite` are pure (time constraint windows come
from :mod:`alarmer.alarms.time_constraints`); :mod:`~alarmer.evaluator.reader`
reads the points, :mod:`~alarmer.evaluator.coordination` shares the alarms
between workers and :mod:`~alarmer.evaluator.service` runs it all.
"""
