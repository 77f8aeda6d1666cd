"""Alarm storage: alarms, their history, quotas, API keys and the outbox.

The tables are declared in :mod:`alarmer.alarms.tables` on the shared
:class:`alarmer.db.Base`.  Every write that can race (an API edit against
an evaluator transition) is a conditional update on ``alarm.version``.
"""
