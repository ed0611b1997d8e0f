import argparse
import subprocess
import sys

import pytest

from action2sound.cli import build_parser, main


def _all_subcommand_paths(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _all_subcommand_paths(sub, prefix + (name,))


def test_every_subcommand_has_help(capsys):
    paths = list(_all_subcommand_paths(build_parser()))
    assert ("data", "benchmark") in paths and ("data", "manifest") in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0
        assert "usage: action2sound" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["data", "manifest", "folder", "no/such/folder", "--out", "x.tsv"],
    ["data", "manifest", "ego4d", "no/such/meta.tsv", "--root", ".", "--out", "x.tsv"],
])
def test_bad_input_is_one_line_naming_the_file(tmp_path, argv, capsys):
    argv = [str(tmp_path / a) if a.startswith("no/") or a in (".", "x.tsv") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("action2sound: error:")
    assert "no/such" in err


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "action2sound.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "data" in out.stdout
