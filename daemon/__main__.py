"""`python -m daemon` is the `ticketd` command."""

from daemon.cli import main

raise SystemExit(main())
