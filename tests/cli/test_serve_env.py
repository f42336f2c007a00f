"""`serve` takes its address from ORCHESTRATOR_HOST / ORCHESTRATOR_PORT, as .env.sample says."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from orchestrator_db.cli import app


def test_serve_reads_host_from_the_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("ORCHESTRATOR_API_TOKEN", raising=False)
    result = CliRunner().invoke(
        app, ["serve", "--db", str(tmp_path / "o.db")],
        env={"ORCHESTRATOR_HOST": "0.0.0.0", "ORCHESTRATOR_PORT": "8123"},
    )
    assert result.exit_code == 1
    assert "without a token" in result.output
    assert "0.0.0.0" in result.output


def test_bad_port_in_the_environment_is_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, ["serve", "--db", str(tmp_path / "o.db")],
                                env={"ORCHESTRATOR_PORT": "eighty", "COLUMNS": "250"})
    assert result.exit_code == 1
    assert "ORCHESTRATOR_PORT" in result.stderr and "valid integer" in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
