"""Who works on tickets: teams, their members and leads, from ``[[teams]]``.

Every member and lead of any team is a *handler*; nobody else is. The directory answers the
process's questions about people (is this a handler, which team, who leads it, what do
requesters call the team) and knows nothing about tickets.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.addresses import Address
from daemon.config import BUILTIN_TEAMS, Config, split_mailbox

# What requesters read for the built-in teams when [[teams]] does not name them.
BUILTIN_LABELS: dict[str, tuple[str, str]] = {
    "ops": ("运维组", "Operations"),
    "dev": ("开发组", "Development"),
    "admins": ("系统管理员组", "Administrators"),
}


@dataclass(frozen=True)
class Team:
    name: str
    label_zh: str
    label_en: str
    lead: Address | None
    members: tuple[Address, ...]
    assign: str = "round_robin"

    def label(self, locale: str) -> str:
        """What a requester reading ``locale`` sees; never the internal name when a label
        exists."""
        zh = locale.startswith("zh")
        return (self.label_zh if zh else self.label_en) or self.label_en or self.label_zh \
            or self.name

    def has_member(self, email: str) -> bool:
        return any(m.email == email.lower() for m in self.members)


@dataclass(frozen=True)
class Directory:
    teams: tuple[Team, ...]

    @classmethod
    def from_config(cls, config: Config) -> Directory:
        teams = []
        for t in config.teams:
            lead = Address(*split_mailbox(t.lead)) if t.lead else None
            members = tuple(Address(*split_mailbox(m)) for m in t.members)
            zh, en = BUILTIN_LABELS.get(t.name, ("", ""))
            teams.append(Team(t.name, t.label_zh or zh, t.label_en or en, lead, members,
                              t.assign))
        if not teams:
            teams = [Team(name, *BUILTIN_LABELS[name], None, ()) for name in BUILTIN_TEAMS]
        return cls(tuple(teams))

    def team(self, name: str | None) -> Team | None:
        return next((t for t in self.teams if t.name == name), None)

    def person(self, email: str) -> Address | None:
        """The handler with this address (with the display name the config gives)."""
        email = email.strip().lower()
        for team in self.teams:
            for person in (*team.members, *([team.lead] if team.lead else [])):
                if person.email == email:
                    return person
        return None

    def is_handler(self, email: str | None) -> bool:
        return bool(email) and self.person(email or "") is not None

    def display_name(self, email: str) -> str:
        person = self.person(email)
        return (person.name if person and person.name else email.partition("@")[0])

    def lead_of(self, team: str | None) -> Address | None:
        found = self.team(team)
        return found.lead if found else None

    def label(self, team: str | None, locale: str) -> str:
        found = self.team(team)
        return found.label(locale) if found else (team or "")

    @property
    def handlers(self) -> frozenset[str]:
        return frozenset(p.email for t in self.teams
                         for p in (*t.members, *([t.lead] if t.lead else [])))
