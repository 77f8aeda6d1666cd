"""alarmer: an alarm-evaluation service with an embedded metrics engine."""

__version__ = "0.1.0"
