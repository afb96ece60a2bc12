"""``python -m train``: every listed subcommand is a module with a ``main``, and the listing dispatches to it."""

from __future__ import annotations

import importlib

import pytest

pytest.importorskip("torch")


def test_every_listed_command_has_a_main(capsys):
    from train.__main__ import COMMANDS, main

    for name in COMMANDS:
        assert callable(importlib.import_module(f"train.{name}").main), name
    assert main([]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in COMMANDS)
    with pytest.raises(SystemExit) as exc:  # dispatched: the subcommand's own argparse answers --help
        main(["average", "--help"])
    assert exc.value.code == 0 and "PATH:WEIGHT" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2
