"""The embedded metrics engine.

Archive policies (:mod:`alarmer.metrics.policy`), pure numpy
aggregation with Gnocchi's bucket semantics, series storage drivers and
the index of policies and metrics in the SQL database.
"""
