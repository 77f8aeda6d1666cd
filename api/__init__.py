"""alarmer's REST API: Gnocchi's v1 dialect and Aodh's v2 dialect."""
