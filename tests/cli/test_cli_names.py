"""One name, one meaning, across the commands (issue 13, item 7)."""

from __future__ import annotations

from pathlib import Path

import typer
from cli_helpers import invoke, sample_data

from orchestrator_db.cli import app


def _options() -> dict[str, dict[str, set[str]]]:
    """command -> short flag -> the long names it stands for."""
    group = typer.main.get_command(app)
    out: dict[str, dict[str, set[str]]] = {}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            opts = list(param.opts) + list(param.secondary_opts)
            longs = {o for o in opts if o.startswith("--")}
            for short in (o for o in opts if not o.startswith("--")):
                out.setdefault(short, {}).setdefault(name, set()).update(longs)
    return out


def test_dash_f_means_follow_wherever_it_exists() -> None:
    meanings = _options().get("-f", {})
    assert meanings == {"logs": {"--follow"}}


def test_every_database_command_takes_db_and_url() -> None:
    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        opts = {o for p in command.params for o in p.opts}
        assert "--db" in opts, name  # init: the database file the project is set up for
        if name != "init":
            assert "--url" in opts, name


def test_export_format_short_flag_and_logs_min_level(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    sample_data(f"sqlite:///{db}")
    csv = invoke("export", "--db", str(db), "--table", "system_logs", "-F", "csv")
    assert csv.exit_code == 0, csv.output
    assert csv.stdout.splitlines()[0].startswith("id,")
    old = invoke("export", "--db", str(db), "--table", "system_logs", "-f", "csv")
    assert old.exit_code == 1 and "No such option: -f" in old.stderr
    by_level = invoke("logs", "--db", str(db), "--level", "WARNING", "--json")
    by_min_level = invoke("logs", "--db", str(db), "--min-level", "WARNING", "--json")
    assert by_level.exit_code == by_min_level.exit_code == 0
    assert by_level.stdout == by_min_level.stdout and by_level.stdout.count("\n") == 2
