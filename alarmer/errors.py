"""The root of alarmer's domain errors.

Every error a domain package raises on purpose derives from
:class:`AlarmerError` (most also keep the builtin base that says what
kind of problem it is: :class:`ValueError` for bad input,
:class:`LookupError` for a missing object).  The API turns each into its
dialect's answer in one table per dialect (``api/errors.py``); anything
else that escapes is a bug, logged and answered with a 500.
"""

from __future__ import annotations


class AlarmerError(Exception):
    """Base of every error raised on purpose by alarmer's domain code."""
