"""The command line: every subcommand has help, and help has no side effects."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kube_lxcfs.cli import build_parser, main
from kube_lxcfs.commands import SUBCOMMANDS


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip()


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_console_script_runs_as_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.startswith("kube-lxcfs ")


def test_parser_builds_without_side_effects() -> None:
    assert build_parser().prog == "kube-lxcfs"


@pytest.mark.parametrize("name", ["fs", "run", "repair", "setup-node", "webhook"])
def test_commands_that_log_share_the_logging_flags(name: str) -> None:
    """--log-level and --log-format mean the same in every command that logs."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    sub = subparsers.choices[name]
    flags = {f: a for a in sub._actions for f in a.option_strings}
    assert set(flags["--log-level"].choices) == {"debug", "info", "warning", "error"}
    assert set(flags["--log-format"].choices) == {"text", "json"}


@pytest.mark.parametrize(("log_format", "is_json"), [("json", True), ("text", False)])
def test_log_format_decides_the_shape_of_log_lines(log_format: str, is_json: bool) -> None:
    """--log-format json: one JSON object per line on stderr; text: a readable line."""
    import json

    script = (
        "import argparse, logging\n"
        "from kube_lxcfs.commands._options import configure_logging\n"
        f"configure_logging(argparse.Namespace(log_level='debug', log_format='{log_format}'))\n"
        "logging.getLogger('kube_lxcfs.test').debug('hello %s', 'there')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    (line,) = proc.stderr.splitlines()
    if is_json:
        entry = json.loads(line)
        assert (entry["level"], entry["logger"], entry["msg"]) == (
            "debug",
            "kube_lxcfs.test",
            "hello there",
        )
    else:
        assert line.endswith("DEBUG kube_lxcfs.test: hello there")
