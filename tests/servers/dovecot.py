"""A throwaway Dovecot IMAP server on 127.0.0.1, for tests that must talk to a real server.

Why a real server: a mocked ``imaplib``/``imapclient`` drifts from what servers really answer
(str versus bytes, APPENDUID, IDLE timing, UIDVALIDITY). Every setting below is explained in
``/work/shared/DOVECOT.md``; the short version:

* Everything lives in one ``tempfile.mkdtemp(prefix="dovecot-")`` directory (config, users
  file, Maildirs, ``base_dir``, ``state_dir``, logs), so the instance never touches
  ``/etc/dovecot`` or ``/var/lib/dovecot`` and can coexist with a system Dovecot.
* As root, Dovecot's auth process runs as ``dovecot`` and the mail process as ``nobody``, so the
  directory and every parent must be searchable by others (o+x). ``pytest``'s ``tmp_path`` is
  not (0700), which is why we do not use it.
* ``auth_failure_delay = 0`` and a disabled anvil auth penalty make a wrong password cost about
  0.5 s instead of 2-6 s.
* The passwd-file is re-read at most once per wall-clock second (``passwd_file_sync`` gates on
  ``last_sync_time == ioloop_time``) and only if mtime or size changed; ``add_user`` works
  around both (see there). Users known before ``start()`` cost nothing.

Typical use is through the fixtures in ``tests/servers/plugin.py``; standalone::

    with Dovecot() as server:
        uid = server.append("support", raw_bytes)
        assert server.fetch_all("support", "INBOX") == {uid: raw_bytes}
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import grp
import math
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import pytest
from imapclient import IMAPClient

DEFAULT_USERS: Mapping[str, str] = {
    "support": "support-pass",
    "alice": "alice-pass",
    "bob": "bob-pass",
}
"""Users every server knows from the start (``name: password``)."""

HOST = "127.0.0.1"
PACKAGE = "dovecot-imapd"
_PORT_IN_USE = 89  # dovecot's exit status when listen() fails (DOVECOT.md: "The port is taken")
_NOBODY = 65534  # uid/gid of nobody:nogroup; Dovecot refuses mail uid 0
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/usr/bin"]
)
_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")

_CONFIG = """\
# Written by tests/servers/dovecot.py; /work/shared/DOVECOT.md explains every line.
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = ticketd-test-{port}
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:~/Maildir
mail_fsync = never
{internal_users}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/mail/%u
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
{chroot}}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{chroot}}}
"""


class DovecotError(RuntimeError):
    """Raised when the throwaway server cannot be set up, started, stopped or driven.

    The message carries the tail of Dovecot's own log, which is where the cause is written.
    """


def find_binary(name: str = "dovecot") -> str:
    """Return the path of a Dovecot program, or skip (fail when ``CI=true``) if it is absent.

    Skipping keeps a developer's laptop without Dovecot usable; failing on CI keeps a broken
    image from turning the whole IMAP suite silently into skips. ``DOVECOT_BINARY`` overrides
    the search for the ``dovecot`` program.
    """
    explicit = os.environ.get("DOVECOT_BINARY") if name == "dovecot" else None
    if explicit:
        found = explicit if os.access(explicit, os.X_OK) else None
    else:
        found = shutil.which(name, path=_SEARCH_PATH)
    if found is None:
        message = f"{name} not found: install the Debian package {PACKAGE}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def free_port() -> int:
    """Ask the kernel for a currently free loopback port (it may be taken again: we retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_searchable(directory: Path) -> None:
    """Fail clearly if Dovecot's unprivileged processes could not reach ``directory``.

    Without this the only symptom is "auth service reported temporary failure" at LOGIN.
    Only matters as root: as a normal user every Dovecot process runs as that user.
    """
    for path in (directory, *directory.parents):
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise DovecotError(
                f"{path} is mode {stat.filemode(mode)}: Dovecot's auth process (user dovecot)"
                f" and mail process (user nobody) need o+x on every parent of {directory}."
                " Point TMPDIR at a world-searchable directory such as /tmp."
            )


def _live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies (zombies hold no ports or files)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(entry.name))
    return members


class Dovecot:
    """One throwaway Dovecot instance: its directory, its users and its master process.

    The directory survives ``stop()``/``restart()`` (mail is kept); ``close()`` removes it.
    Methods that touch mail open their own short IMAP connection, so a test's own clients
    are never disturbed.
    """

    host: str = HOST

    def __init__(self, users: Mapping[str, str] | None = None, *, tls: bool = False) -> None:
        """``tls=True`` adds a self-signed certificate for 127.0.0.1 (``cert_path``), STARTTLS
        on ``port`` and implicit TLS on ``tls_port``."""
        self._binary = find_binary("dovecot")
        self.tls = tls
        self.tls_port = 0
        self._users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        if not self._users:
            raise ValueError("a Dovecot needs at least one user (readiness is a LOGIN)")
        for name, password in self._users.items():
            _check_user(name, password)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._users_mtime = 0
        self._root = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="dovecot-"))
        try:
            self.dir.chmod(0o755)
            if self._root:
                _check_searchable(self.dir)
            mail = self.dir / "mail"
            mail.mkdir()
            if self._root:
                os.chown(mail, _NOBODY, _NOBODY)
            self._write_users()
            if tls:
                self._make_certificate()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        atexit.register(self._kill_at_exit)

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """True while the master process started by us is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def conf_path(self) -> Path:
        return self.dir / "dovecot.conf"

    def start(self, timeout: float = 10.0) -> None:
        """Start on a random free port (or the previous one after ``stop()``) and wait until
        a LOGIN succeeds: a TCP connect alone is not enough, the greeting comes ~25 ms later.

        A fresh port is retried when Dovecot exits with 89 (port taken meanwhile); a port
        kept from an earlier run must stay the same, so that is an error.
        """
        if self.running:
            raise DovecotError("Dovecot is already running")
        keep_port = self.port != 0
        for _attempt in range(1 if keep_port else 5):
            port = self.port if keep_port else free_port()
            if self._launch(port, timeout):
                self.port = port
                return
        raise DovecotError(f"Dovecot could not listen on 127.0.0.1:{port}:\n{self._log_tail()}")

    def _launch(self, port: int, timeout: float) -> bool:
        """Start the master once; False if the port was taken (exit 89), True when ready."""
        self._write_config(port)
        with (self.dir / "stdout.log").open("ab") as out:
            self._proc = subprocess.Popen(
                [self._binary, "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Own process group: stop() can see (and if needed kill) every child by pgid,
                # and a Ctrl-C in the terminal does not hit Dovecot before our teardown runs.
                start_new_session=True,
            )
        user, password = next(iter(self._users.items()))
        deadline = time.monotonic() + timeout
        while True:
            status = self._proc.poll()
            if status is not None:
                self._proc = None
                if status == _PORT_IN_USE and "Address already in use" in self._log_tail(5):
                    return False
                raise DovecotError(f"dovecot exited with {status}:\n{self._log_tail()}")
            try:
                with IMAPClient(HOST, port=port, ssl=False, timeout=1.0) as client:
                    client.login(user, password)
                return True
            except (OSError, IMAPClient.Error):
                if time.monotonic() > deadline:
                    self._terminate(signal.SIGKILL)
                    raise DovecotError(
                        f"Dovecot not ready after {timeout} s:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the master and wait until it, its children and ``master.pid`` are gone.

        Dovecot refuses to start on a ``base_dir`` whose ``master.pid`` names a live process,
        and a zombie still passes ``kill -0``; so we reap our own child and check that no
        non-zombie process is left in its process group. Takes about 1.1 s (the master waits
        for its children).
        """
        self._terminate(signal.SIGTERM, timeout)

    def restart(self) -> None:
        """Stop, then start on the same port with the same mail: the server goes away and
        comes back, as a real one does on upgrade."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its directory (mail, logs, config)."""
        self.stop()
        atexit.unregister(self._kill_at_exit)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _terminate(self, sig: signal.Signals, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            sig = signal.SIGKILL
            proc.kill()
            proc.wait()
        self._proc = None
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            (self.dir / "run" / "master.pid").unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        escalated = sig == signal.SIGKILL
        while (self.dir / "run" / "master.pid").exists() or _live_group_members(proc.pid):
            now = time.monotonic()
            if not escalated and now > deadline - timeout / 2:
                # The master is gone (reaped above) but one of its children lingers, e.g. an
                # imap process still serving a client on a loaded machine: this throwaway
                # server's processes are ours to kill, and its stale pid file ours to remove.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                (self.dir / "run" / "master.pid").unlink(missing_ok=True)
                escalated = True
            if now > deadline:
                raise DovecotError(f"Dovecot (pid {proc.pid}) did not go away in {timeout} s")
            time.sleep(0.01)

    def _kill_at_exit(self) -> None:
        """Last resort if a session dies without teardown: never leave a Dovecot behind."""
        with contextlib.suppress(Exception):
            self._terminate(signal.SIGKILL, 2.0)

    # -- users -----------------------------------------------------------------------------

    @property
    def users(self) -> Mapping[str, str]:
        return dict(self._users)

    def add_user(self, name: str, password: str) -> None:
        """Add (or re-password) a user; it can log in as soon as this returns.

        Dovecot re-reads the passwd-file at most once per wall-clock second and only if its
        mtime or size changed, so a user written in the same second as an earlier LOGIN may
        stay unknown. We therefore give the file an mtime in a second of its own and, while
        the server runs, return only once the wall clock has moved past the second in which
        the file changed (up to 1 s). Pass users to the constructor to avoid the wait.
        """
        _check_user(name, password)
        self._users[name] = password
        self._write_users()
        if self.running:
            wait = math.floor(time.time()) + 1 - time.time()
            time.sleep(wait + 0.005)

    def _write_users(self) -> None:
        path = self.dir / "users"
        tmp = self.dir / "users.tmp"
        tmp.write_text("".join(f"{n}:{{PLAIN}}{p}\n" for n, p in self._users.items()))
        tmp.chmod(0o644)
        self._users_mtime = max(math.floor(time.time()), self._users_mtime + 1)
        os.utime(tmp, (self._users_mtime, self._users_mtime))
        tmp.replace(path)

    # -- IMAP helpers ----------------------------------------------------------------------

    def client(self, user: str) -> IMAPClient:
        """A new logged-in connection as ``user``; close it (``with`` or ``logout()``)."""
        if user not in self._users:
            raise DovecotError(f"unknown user {user!r}: pass it to Dovecot() or add_user()")
        client = IMAPClient(HOST, port=self.port, ssl=False, timeout=10.0)
        try:
            client.login(user, self._users[user])
        except BaseException:
            client.shutdown()
            raise
        return client

    def append(
        self,
        user: str,
        raw: bytes,
        folder: str = "INBOX",
        flags: Iterable[str | bytes] = (),
        msg_time: dt.datetime | None = None,
    ) -> int:
        """APPEND ``raw`` unchanged and return its UID (from the APPENDUID response)."""
        with self.client(user) as client:
            response = client.append(folder, raw, flags=tuple(flags), msg_time=msg_time)
        match = _APPENDUID.search(response)
        if match is None:
            raise DovecotError(f"APPEND gave no APPENDUID: {response!r}")
        return int(match.group(2))

    def create_folder(self, user: str, folder: str) -> None:
        with self.client(user) as client:
            client.create_folder(folder)

    def folder_uids(self, user: str, folder: str = "INBOX") -> list[int]:
        """UIDs in ``folder``, ascending (read-only SELECT: no \\Recent or \\Seen changes)."""
        with self.client(user) as client:
            client.select_folder(folder, readonly=True)
            return sorted(client.search("ALL"))

    def fetch_all(self, user: str, folder: str = "INBOX") -> dict[int, bytes]:
        """Every message in ``folder`` as raw bytes by UID, fetched with BODY.PEEK[]."""
        with self.client(user) as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            if not uids:
                return {}
            data = client.fetch(uids, ["BODY.PEEK[]"])
        return {uid: data[uid][b"BODY[]"] for uid in sorted(data)}

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.client(user) as client:
            status = client.folder_status(folder, [b"UIDVALIDITY"])
        return int(status[b"UIDVALIDITY"])

    def reset(self, user: str) -> None:
        """Delete every folder but INBOX and empty INBOX: per-test isolation in a few ms,
        where a restart costs over a second. UIDs keep growing (UIDNEXT is not reset)."""
        with self.client(user) as client:
            # Skip placeholders: Maildir++ lists "A" as \Noselect when only "A.B" was
            # created, and that "A" is gone as soon as "A.B" is deleted.
            placeholder = {b"\\Noselect", b"\\NonExistent"}
            folders = [
                (name, delim.decode() if isinstance(delim, bytes) else delim)
                for flags, delim, name in client.list_folders()
                if not placeholder & set(flags) and name.upper() != "INBOX"
            ]
            # Children before parents, so a DELETE never meets a folder with inferiors.
            for name, _delim in sorted(folders, key=lambda f: f[0].count(f[1]), reverse=True):
                client.delete_folder(name)
            for _flags, _delim, name in client.list_sub_folders():
                if name.upper() != "INBOX":
                    client.unsubscribe_folder(name)
            client.select_folder("INBOX")
            uids = client.search("ALL")
            if uids:
                client.delete_messages(uids)
                client.expunge()
            client.close_folder()

    def change_uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        """Give ``folder`` a new UIDVALIDITY, keeping its messages; return the new value.

        Uses ``doveadm mailbox update --uid-validity``, which works for INBOX too (INBOX
        cannot be deleted and recreated). Clients must then forget every UID they cached,
        which is what the intake's cursor handling is tested against. Checked afterwards
        over IMAP, so a silently ignored update fails here rather than in the test.
        """
        old = self.uidvalidity(user, folder)
        new = max(old + 1, int(time.time()))
        doveadm = find_binary("doveadm")
        result = subprocess.run(
            [
                doveadm,
                "-c",
                str(self.conf_path),
                "mailbox",
                "update",
                "-u",
                user,
                "--uid-validity",
                str(new),
                folder,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise DovecotError(
                f"doveadm mailbox update failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        seen = self.uidvalidity(user, folder)
        if seen != new:
            raise DovecotError(f"UIDVALIDITY of {folder} is {seen}, expected {new}")
        return new

    # -- diagnostics -----------------------------------------------------------------------

    def log_text(self) -> str:
        """Dovecot's log plus anything the master printed itself (e.g. config errors)."""
        parts = []
        for name in ("stdout.log", "dovecot.log"):
            path = self.dir / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def _log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    @property
    def cert_path(self) -> Path:
        return self.dir / "cert.pem"

    def _make_certificate(self) -> None:
        """A self-signed certificate whose subjectAltName is IP:127.0.0.1 (openssl CLI)."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise DovecotError("openssl not found: needed to make the test certificate")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(self.dir / "key.pem"), "-out", str(self.cert_path)],
            check=True, capture_output=True,
        )
        (self.dir / "key.pem").chmod(0o644)  # read by Dovecot's login processes

    def _write_config(self, port: int) -> None:
        if self.tls and not self.tls_port:
            self.tls_port = free_port()
        ssl = (f"ssl = yes\nssl_cert = <{self.cert_path}\nssl_key = <{self.dir / 'key.pem'}"
               if self.tls else "ssl = no")
        if self._root:
            uid = gid = _NOBODY
            internal_users = ""
            chroot = ""
        else:
            # DOVECOT.md, "Running as non-root": every service runs as us, no chroot.
            uid, gid = os.geteuid(), os.getegid()
            try:
                user_name = pwd.getpwuid(uid).pw_name
                group_name = grp.getgrgid(gid).gr_name
            except KeyError as err:
                raise DovecotError(
                    f"uid {uid}/gid {gid} has no name; Dovecot needs named users"
                ) from err
            internal_users = (
                f"default_internal_user = {user_name}\n"
                f"default_internal_group = {group_name}\n"
                f"default_login_user = {user_name}"
            )
            chroot = "  chroot =\n"
        self.conf_path.write_text(
            _CONFIG.format(
                dir=self.dir,
                port=port,
                uid=uid,
                gid=gid,
                internal_users=internal_users,
                chroot=chroot,
                ssl=ssl,
                tls_port=self.tls_port,
            )
        )

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Dovecot {self.host}:{self.port} {state} dir={self.dir}>"


def _check_user(name: str, password: str) -> None:
    """Reject names the passwd-file format cannot hold (it is ``name:{PLAIN}password``)."""
    for value in (name, password):
        if not value or any(ch in value for ch in ":\r\n"):
            raise ValueError(
                f"user names and passwords cannot be empty or hold ':' or EOL: {value!r}"
            )
