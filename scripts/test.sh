#!/usr/bin/env bash
# Installs everything the test suite needs and runs all of it: lint, types, tests on SQLite
# and PostgreSQL. Used by CI (.ci/run) and by developers alike:  bash scripts/test.sh [pytest args]
# Under CI=true a missing real component (Dovecot, PostgreSQL) fails the run; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
ci=${CI:-false}

say() { printf '== %s\n' "$*"; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

# 1. Dovecot (real IMAP server for the integration tests) and openssl (its test certificate)
missing=""
[ -x /usr/sbin/dovecot ] || missing="$missing dovecot-imapd"
command -v openssl >/dev/null || missing="$missing openssl"
if [ -n "$missing" ]; then
  say "installing$missing"
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
  [ -x /usr/sbin/dovecot ] || { [ "$ci" = true ] && die "dovecot-imapd is missing and could not be installed"; say "no dovecot: IMAP tests will skip"; }
  command -v openssl >/dev/null || { [ "$ci" = true ] && die "openssl is missing and could not be installed"; }
fi

# 2. Python packages, in a project virtualenv
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$python" -m venv .venv
fi
say "installing ticketd with test extras"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v 'is ignored' || true
.venv/bin/python -c 'import daemon, aiosmtpd, psycopg, hypothesis' || die "python dependencies did not install"
# Bytecode, as an installed package has it: the end-to-end tests start `ticketd` hundreds of
# times, and with PYTHONDONTWRITEBYTECODE set each start would compile every module again.
.venv/bin/python -m compileall -q daemon >/dev/null || true

# 3. PostgreSQL at 127.0.0.1:5432 (user postgres, database test, trust auth)
pg_up() { .venv/bin/python -c 'import psycopg; psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=3).close()' 2>/dev/null; }
if [ -z "${TICKETD_TEST_DATABASE_URL:-}" ]; then
  if ! pg_up && command -v pg_ctlcluster >/dev/null; then
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
  fi
  if pg_up; then
    export TICKETD_TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/test"
  elif [ "$ci" = true ]; then
    die "PostgreSQL does not answer at 127.0.0.1:5432 (user postgres, database test)"
  else
    say "no PostgreSQL: storage tests run on SQLite only"
  fi
fi
say "databases: sqlite${TICKETD_TEST_DATABASE_URL:+ + postgresql}"

# 4. Gates, then the suite
say "ruff"; .venv/bin/ruff check daemon tests bench
say "mypy"; .venv/bin/mypy daemon
say "mypy (tests and bench, relaxed)"; .venv/bin/mypy --explicit-package-bases tests bench
say "pytest"
# One test process per core (pytest-xdist): the suite is CPU-bound (the end-to-end tests start
# ticketd, its workers and Dovecot), and every test has its own ports, schema and folders.
workers=${TICKETD_TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}
exec .venv/bin/python -m pytest -p no:cacheprovider -n "$workers" "$@"
