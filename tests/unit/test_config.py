"""Config validation: every kind of error names the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import load
from daemon.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    return str(info.value)


def test_shipped_config_is_valid_and_documents_every_key() -> None:
    cfg = load(REPO / "config.toml")
    assert cfg.support.locale == "zh-CN"
    assert cfg.tickets.prefix == "TS" and cfg.tickets.serial_width == 6
    assert cfg.database.url == "sqlite:///var/tickets.db"
    assert cfg.imap.folder == "INBOX" and cfg.imap.processed_folder == "Processed"
    assert cfg.smtp.backend == "file"
    assert Path(cfg.smtp.file_dir) == REPO / "var" / "outbox"  # relative to the file's folder


def test_embedded_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TICKETD_CONFIG", raising=False)
    cfg = load()
    assert cfg.path is None and Path(cfg.attachments.dir) == tmp_path / "var" / "attachments"


def test_env_variable_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETD_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing.toml: config file not found"):
        load()


def test_wrong_type_names_file_section_key_and_expectation(tmp_path: Path) -> None:
    msg = error_of(tmp_path, '[imap]\nport = "abc"\n')
    assert msg == f'{tmp_path / "config.toml"}: [imap] port: expected an integer 1-65535, got "abc"'


def test_out_of_range(tmp_path: Path) -> None:
    assert error_of(tmp_path, "[imap]\nport = 70000\n").endswith(
        "[imap] port: expected an integer 1-65535, got 70000")


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    msg = error_of(tmp_path, '[imap]\nhots = "mail.example.com"\n')
    assert "[imap] hots: unknown key" in msg and "host" in msg


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    assert "[imapp]: unknown section" in error_of(tmp_path, "[imapp]\nport = 1\n")


def test_choice(tmp_path: Path) -> None:
    msg = error_of(tmp_path, '[imap]\nsecurity = "tls"\n')
    assert msg.endswith('[imap] security: expected one of "ssl", "starttls", "none", got "tls"')


def test_bool_is_not_an_integer(tmp_path: Path) -> None:
    assert "expected an integer" in error_of(tmp_path, "[tickets]\nserial_width = true\n")


def test_timezone_and_locale(tmp_path: Path) -> None:
    assert "IANA time zone" in error_of(tmp_path, '[support]\ntimezone = "Mars/Olympus"\n')
    assert 'one of "zh-CN", "en"' in error_of(tmp_path, '[support]\nlocale = "fr"\n')


def test_bad_toml_syntax(tmp_path: Path) -> None:
    assert "not valid TOML" in error_of(tmp_path, "[imap\nport=1\n")


def test_cross_checks(tmp_path: Path) -> None:
    assert "[imap] username" in error_of(tmp_path, '[imap]\nhost = "mail.example.com"\n')
    msg = error_of(tmp_path, "[attachments]\nmax_bytes = 10\nmax_message_bytes = 5\n")
    assert "max_bytes: expected at most max_message_bytes" in msg


def test_secrets_come_from_env_or_file_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("s3cret-file\n")
    cfg = load(write(tmp_path, '[imap]\npassword_env = "T_PW"\n[smtp]\npassword_file = "pw"\n'))
    monkeypatch.setenv("T_PW", "s3cret-env")
    assert cfg.imap.password.reveal() == "s3cret-env"
    assert cfg.smtp.password.reveal() == "s3cret-file"
    assert "s3cret" not in repr(cfg)
    monkeypatch.delenv("T_PW")
    with pytest.raises(ConfigError, match="T_PW is not set"):
        cfg.imap.password.reveal()


def test_secret_in_both_places_is_an_error(tmp_path: Path) -> None:
    assert "set only one" in error_of(
        tmp_path, '[smtp]\npassword_env = "A"\npassword_file = "b"\n')
