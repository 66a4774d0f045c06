"""The terminal progress line (pure) and when it is shown."""

from __future__ import annotations

import io

from indexer.progress import Progress, progress_line


def test_progress_line_has_rates_percentage_and_eta():
    line = progress_line("local", first=1_001, block=2_000, target=11_000, events=50_000, elapsed=10.0)
    assert line == "local: block 2,000/11,000 (10.0%)  100 blocks/s  5,000 events/s  ETA 1m30s"


def test_eta_in_hours_and_unknown_before_any_block():
    assert progress_line("c", 0, 99, 1_000_099, 0, 1.0).endswith("ETA 2h46m")
    assert progress_line("c", 10, 9, 20, 0, 1.0).endswith("ETA -")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_prints_on_a_terminal_only_and_ends_the_line_at_the_target():
    quiet = io.StringIO()
    Progress("c", 0, 9, stream=quiet).update(9, 5, 1.0)
    assert quiet.getvalue() == ""
    terminal = Terminal()
    progress = Progress("c", 0, 9, stream=terminal)
    progress.update(4, 3, 1.0)
    progress.update(9, 2, 2.0)
    assert terminal.getvalue().count("\r") == 2 and terminal.getvalue().endswith("ETA 0s\n")
    assert "10 blocks/s" not in terminal.getvalue() and "5 blocks/s" in terminal.getvalue()
