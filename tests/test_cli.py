"""The ``sessionkv`` entry point itself (each subcommand is tested with its capability)."""

from __future__ import annotations

import pytest

from sessionkv import __version__
from sessionkv.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sessionkv {__version__}"


def test_no_subcommand_prints_help_and_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "certify" in capsys.readouterr().out


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_subcommands_are_dispatched_with_their_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certify", "no_such_module_here:factory"]) == 2
    assert "cannot import module 'no_such_module_here'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["proxy", "--help"])
    assert exit_info.value.code == 0
    assert "--upstream HOST:PORT" in capsys.readouterr().out
