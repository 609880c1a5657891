"""The composition root: one object that holds what every command needs, built once.

Nothing here is global: the CLI builds an :class:`App` from the loaded config and passes it
down; tests build one with a :class:`~daemon.clock.FixedClock` and a temporary database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from daemon import db as dbmod
from daemon.classify import Reader
from daemon.clock import Clock, SystemClock
from daemon.config import Config
from daemon.directory import Directory
from daemon.ticket_numbers import NumberFormat

T = TypeVar("T")


@dataclass
class App:
    config: Config
    clock: Clock = field(default_factory=SystemClock)
    _upgraded: bool = False
    _parts: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def part(self, build: Callable[[App], T]) -> T:
        """A long-lived part of this app, built once by ``build`` (the template store with its
        hot-reload state, ...). The part's own module supplies ``build``, so this composition
        root never imports the layers above it (``replies.templates.store(app)``)."""
        with self._lock:
            if build not in self._parts:
                self._parts[build] = build(self)
            part: T = self._parts[build]
            return part

    @cached_property
    def db(self) -> dbmod.Database:
        return dbmod.connect(self.config.database.url, self.config.base_dir,
                             echo=self.config.database.echo)

    def ready_db(self) -> dbmod.Database:
        """The database, migrated to the newest schema (commands that write call this)."""
        if not self._upgraded:
            dbmod.upgrade(self.db)
            self._upgraded = True
        return self.db

    @cached_property
    def numbers(self) -> NumberFormat:
        return NumberFormat(self.config.tickets.prefix, self.config.tickets.serial_width,
                            self.config.support.timezone)

    @cached_property
    def reader(self) -> Reader:
        """How requests are read: categories, fields, required details (from the config)."""
        return Reader.from_config(self.config)

    @cached_property
    def directory(self) -> Directory:
        """Teams, handlers and leads (from [[teams]])."""
        return Directory.from_config(self.config)

    @property
    def attachments_dir(self) -> Path:
        return Path(self.config.attachments.dir)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
