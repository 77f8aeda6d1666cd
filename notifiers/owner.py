"""The lasting identity of a notifier: a slot held for a process's life.

A notifier process takes the first free slot of its data directory: the
file ``notifier-slots/<n>.lock`` locked with ``flock``.  The lock is held
until the process stops or dies (the kernel releases it with the
process), so a process that gets slot *n* knows that the previous holder
of *n* is gone.  The owner name, ``<worker name or host>:<n>``, is
recorded with every claim (:attr:`notifiers.tables.Delivery.claim_owner`)
and the next process of the slot requeues its predecessor's in-flight
claims at start (:meth:`notifiers.queue.DeliveryQueue.reclaim`) rather
than after ``claim_timeout``.  The claims of live notifiers hold other
slots and are never taken early.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket

from oslo_config import cfg

from alarmer import conf as conf_mod

LOG = logging.getLogger(__name__)

#: Slots tried before giving up (then claims only expire).
MAX_SLOTS = 1024
#: Longest owner name (the width of the column).
MAX_OWNER = 64


class Slot:
    """The slot of one notifier; :meth:`release` it when stopping."""

    def __init__(self, owner: str, number: int, fd: int) -> None:
        self.owner = owner
        self.number = number
        self._fd: int | None = fd

    def release(self) -> None:
        """Unlock and close the slot file (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def owner_name(conf: cfg.ConfigOpts, number: int) -> str:
    """Return the owner name of slot *number* of this notifier."""
    base = conf.notifier.worker_name or socket.gethostname()
    suffix = f":{number}"
    return base[: MAX_OWNER - len(suffix)] + suffix


def take_slot(conf: cfg.ConfigOpts) -> Slot | None:
    """Lock the first free slot of the data directory.

    :returns: None when no slot can be taken (unwritable directory...):
        the notifier then runs without a lasting identity.
    """
    try:
        directory = os.path.join(conf_mod.data_dir(conf), "notifier-slots")
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        LOG.warning("no notifier slot (claims will only expire): %s", exc)
        return None
    for number in range(MAX_SLOTS):
        path = os.path.join(directory, f"{number}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            LOG.warning("no notifier slot (claims will only expire): %s", exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return Slot(owner_name(conf, number), number, fd)
    LOG.warning("no free notifier slot among %d", MAX_SLOTS)
    return None
