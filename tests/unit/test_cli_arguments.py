"""The global options (--config, --log-level) go before the command, as SPEC 8 writes it, or after it."""

from __future__ import annotations

import pytest

from indexer.cli import build_parser

REWARD = ["add", "--epoch", "1", "--validator", "v", "--asset", "ETH", "--amount", "5"]


@pytest.mark.parametrize(
    ("argv", "config", "level"),
    [
        (["run"], "chains.yaml", "info"),
        (["--config", "a.yaml", "run", "--once"], "a.yaml", "info"),
        (["run", "--once", "--config", "b.yaml"], "b.yaml", "info"),
        (["--config", "a.yaml", "run", "--config", "b.yaml"], "b.yaml", "info"),  # the later one wins
        (["--log-level", "error", "status", "--config", "c.yaml"], "c.yaml", "error"),
        (["status", "--log-level", "debug"], "chains.yaml", "debug"),
        (["rewards", *REWARD, "--config", "d.yaml"], "d.yaml", "info"),
        (["epochs", "close", "3", "--config", "e.yaml", "--log-level", "warning"], "e.yaml", "warning"),
        (["points", "compute", "--through", "2026-01-01", "--config", "f.yaml"], "f.yaml", "info"),
    ],
)
def test_global_options_before_or_after_the_command(argv, config, level, monkeypatch):
    monkeypatch.delenv("INDEXER_LOG_LEVEL", raising=False)
    args = build_parser().parse_args(argv)
    assert (args.config, args.log_level) == (config, level)


def test_a_bad_log_level_after_the_command_is_an_error_naming_it(capsys):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["run", "--log-level", "loud"])
    assert stopped.value.code == 2
    assert "--log-level: invalid choice: 'loud'" in capsys.readouterr().err
