"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "info", *, human: bool | None = None) -> None:
    """Route structlog to stderr at `level`: JSON lines, or a human-readable renderer on a terminal."""
    if human is None:
        human = sys.stderr.isatty()
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False) if human else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # web3 logs endpoint URLs (API keys included) at INFO and DEBUG: keep it to warnings.
    logging.getLogger("web3").setLevel(logging.WARNING)
