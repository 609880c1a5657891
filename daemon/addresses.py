"""Mail addresses as every layer sees them: intake produces them, replies and the workflow use them.

A value object low in the layer map, so that ``replies/`` and the process modules never import
``intake/`` to talk about a person.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Address:
    """A decoded mailbox. ``email`` is lower-cased; ``name`` may be empty."""

    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


def domain_of(address: str) -> str:
    """The domain of an address, lower case ("" when it has none)."""
    _, at, domain = address.strip().lower().rpartition("@")
    return domain if at else ""


def normalize(address: str) -> str:
    """The mailbox an address delivers to, for counting: lower case, ``+tag`` dropped."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at:
        return address.strip().lower()
    return f"{local.split('+', 1)[0]}@{domain}"
