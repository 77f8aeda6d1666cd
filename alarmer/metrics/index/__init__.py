"""The metric index in SQL: archive policies, metrics, resources, search."""
