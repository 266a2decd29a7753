"""The market's ``creditx`` commands against a real SQLite store."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from serving.cli import app


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_store_swap_trade_verify(sqlite_url: str) -> None:
    url = ["--url", sqlite_url]
    assert "4 tiers, 4 hosts, 7 instances" in run("store", "init", *url)
    run("accrue", "vm-silver-1", "--seconds", "86400", "--cpu", "0", *url)
    out = run("accrue", "vm-silver-1", "--seconds", "3600", "--cpu", "1", *url)
    assert "to pool 10.800" in out
    run("funds", "deposit", "vm-silver-2", "5000", "--actor", "admin", *url)
    out = run("trade", "vm-silver-1", "vm-silver-2", "10000", "123", *url)
    assert "at 123 a credit for 1230 (fee 2)" in out
    out = run("swap", "silver", "gold", "5000", "--actor", "admin", *url)
    assert "into 3409 of gold" in out
    out = run("rates", "set", "gold", "2.5", "--actor", "admin", "--reason", "busy", *url)
    assert "2.2 -> 2.5" in out
    assert "busy" in run("rates", "history", *url)
    pools = run("pools", *url)
    assert "5.800" in pools  # silver: 10.8 overflowed, 5 swapped out
    balances = run("balances", "--prefix", "instance:vm-silver-2", *url)
    assert "3,768" in balances  # 5,000 less 1,230 and the fee of 2
    assert "ledger verified" in run("ledger", "verify", *url)
    assert "vm-silver-1" in run("log", "--kind", "trade", "--tier", "silver", *url)


def test_refused_commands_exit_2_and_change_nothing(sqlite_url: str) -> None:
    url = ["--url", sqlite_url]
    run("store", "init", *url)
    before = run("balances", *url)
    assert "must be positive" in run(
        "swap", "silver", "gold", "0", "--actor", "admin", *url, code=2
    )
    assert "not an administrator" in run(
        "swap", "silver", "gold", "5", "--actor", "mallory", *url, code=2
    )
    assert "insufficient balance" in run("trade", "vm-gold-1", "vm-gold-2", "5", "1", *url, code=2)
    assert "unknown tier 'diamond'" in run(
        "rates", "set", "diamond", "2", "--actor", "admin", "--reason", "r", *url, code=2
    )
    assert "cpu_utilisation" in run("accrue", "vm-gold-1", "--cpu", "nan", *url, code=2)
    assert run("balances", *url) == before


def test_commands_need_an_initialised_store(tmp_path: Path) -> None:
    out = run("pools", "--url", f"sqlite:///{tmp_path / 'empty.db'}", code=2)
    assert "creditx store init" in out


def test_bad_config_is_reported(tmp_path: Path, sqlite_url: str) -> None:
    config = tmp_path / "tiers.toml"
    config.write_text("[[hosts]]\nid = 'h'\ntier = 'ghost'\nvcpus = 1\n")
    out = run("store", "init", "--url", sqlite_url, "--config", str(config), code=2)
    assert "unknown tier 'ghost'" in out
