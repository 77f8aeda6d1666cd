"""The embedded metrics engine.

Archive policies (:mod:`alarmer.metrics.policy`), pure numpy
aggregation with Gnocchi's bucket semantics, series storage drivers
(:mod:`alarmer.metrics.series`), the index of policies and metrics in
the SQL database (:mod:`alarmer.metrics.index`), the aggregates language
that reads them back (:mod:`alarmer.metrics.query`) and the one door
for writes (:mod:`alarmer.metrics.ingest`).
"""
