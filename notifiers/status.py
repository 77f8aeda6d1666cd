"""The statuses of a delivery (pure data, shared by the queue and policy)."""

from __future__ import annotations

#: Behind an earlier delivery of its stream that is not final yet.
WAITING = "waiting"
PENDING = "pending"
IN_FLIGHT = "in_flight"
DELIVERED = "delivered"
DEAD = "dead"
STATUSES = (WAITING, PENDING, IN_FLIGHT, DELIVERED, DEAD)
#: Statuses after which a delivery no longer holds back its stream.
FINAL = (DELIVERED, DEAD)
#: Statuses that hold back the later deliveries of a stream.
OPEN = (WAITING, PENDING, IN_FLIGHT)
