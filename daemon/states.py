"""The names of a ticket's states and priorities: the vocabulary every layer shares.

Only the names live here (the database constrains its columns to them); which moves between
states are allowed, and what each move implies, is :mod:`daemon.workflow`'s.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    NEW = "new"                  # received, not yet assigned
    NEED_INFO = "need_info"      # waiting for the requester's missing details
    ACCEPTED = "accepted"        # 已受理: a main handler is assigned
    IN_PROGRESS = "in_progress"  # the handler has answered or is working on it
    RESOLVED = "resolved"        # 处理完成: waiting for the requester's confirmation
    CLOSED = "closed"            # done for good
    REOPENED = "reopened"        # the requester said it is not solved; back to the handler


PRIORITIES = ("P0", "P1", "P2", "P3")

# States in which a ticket still needs work (SLA, status counts, least_open).
OPEN_STATES = (Status.NEW, Status.NEED_INFO, Status.ACCEPTED, Status.IN_PROGRESS,
               Status.REOPENED)
# States in which a handler is actively holding the ticket (least_open load).
WORKING_STATES = (Status.ACCEPTED, Status.IN_PROGRESS, Status.REOPENED)
