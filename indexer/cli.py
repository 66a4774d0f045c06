"""The `indexer` command line: `indexer --config PATH <command>`."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from datetime import date

from indexer import __version__
from indexer.errors import IndexerError


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--config and --log-level: before the command with their defaults, and again after it (`indexer run
    --config x.yaml`) without, so that an option given there overrides the one before and none leaves it be."""

    def default(value: str) -> str:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--config", default=default("chains.yaml"), help="path to chains.yaml (default: ./chains.yaml)")
    parser.add_argument(
        "--log-level",
        default=default(os.environ.get("INDEXER_LOG_LEVEL", "info")),
        choices=["debug", "info", "warning", "error"],
    )


def _seconds(text: str) -> float:
    """A CLI duration: a number of seconds, zero or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of seconds >= 0: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indexer", description="Multistaking indexer")
    _global_options(parser, defaults=True)
    parser.add_argument("--version", action="version", version=f"indexer {__version__}")
    after_the_command = argparse.ArgumentParser(add_help=False)
    _global_options(after_the_command, defaults=False)
    command = functools.partial(argparse.ArgumentParser, parents=[after_the_command])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=command)

    run = commands.add_parser("run", help="index every chain and follow the heads until SIGINT/SIGTERM")
    run.add_argument("--once", action="store_true", help="index to the current confirmed head, then exit")

    migrate = commands.add_parser("migrate", help="bring the database schema up to date (run does it at start)")
    migrate.add_argument("--dry-run", action="store_true", help="list the migrations that would run, change nothing")
    commands.add_parser("status", help="print each chain's indexing status")
    reproject = commands.add_parser("reproject", help="rebuild every projection from the event log")
    reproject.add_argument(
        "--wait-seconds",
        type=_seconds,
        default=300.0,
        help="while a running service holds the projector (it rebuilds them), how long to wait for it (default 300)",
    )
    commands.add_parser("verify", help="compare the projections with the contracts' state (eth_call)")

    rewards = commands.add_parser("rewards", help="record validators' rewards per epoch")
    rewards_actions = rewards.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=command)
    reward = rewards_actions.add_parser("add", help="record a validator's reward for an epoch (base units)")
    reward.add_argument("--epoch", type=int, required=True)
    reward.add_argument("--validator", required=True)
    reward.add_argument("--asset", required=True)
    reward.add_argument("--amount", type=int, required=True, help="integer, in the asset's base units")
    epochs = commands.add_parser("epochs", help="reward epochs")
    epochs_actions = epochs.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=command)
    close = epochs_actions.add_parser("close", help="split an epoch's rewards and store its Merkle root (final)")
    close.add_argument("epoch", type=int)
    points = commands.add_parser("points", help="loyalty boost program points")
    points_actions = points.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=command)
    compute = points_actions.add_parser("compute", help="compute every staker's points per day through a day (UTC)")
    compute.add_argument("--through", type=date.fromisoformat, required=True, metavar="YYYY-MM-DD")
    proof = commands.add_parser("proof", help="print a staker's Merkle proofs for a closed epoch (JSON)")
    proof.add_argument("--epoch", type=int, required=True)
    proof.add_argument("--staker", required=True)

    demo = commands.add_parser("demo", help="start a local anvil, stake on it, index it and print what was found")
    demo.add_argument("--seed", type=int, default=7, help="seed of the generated staking traffic")
    return parser


async def _dispatch(args: argparse.Namespace) -> int:
    from indexer.config import load_config

    config = load_config(args.config)
    if args.command == "run":
        from indexer.service import run

        await run(config, once=args.once)
        return 0
    if args.command == "migrate":
        from indexer.store.database import create_pool, embedded_dsn
        from indexer.store.migrate import applied_migrations, migrate

        pool = await create_pool(config.database.dsn or embedded_dsn(), max_size=1)
        try:
            names = await migrate(pool, dry_run=args.dry_run)
            for name in names:
                print(f"migrate: {'would apply' if args.dry_run else 'applied'} {name}")
            if not names:
                print(f"migrate: up to date ({len(await applied_migrations(pool))} migrations applied)")
        finally:
            await pool.close()
        return 0
    if args.command == "status":
        from indexer.status import print_status

        return await print_status(config)
    if args.command in ("reproject", "verify"):
        from indexer.service import open_database

        async with open_database(config) as pool:
            if args.command == "verify":
                from indexer.verify import print_verify

                return await print_verify(config, pool)
            from indexer.projector.runner import reproject_owned

            folded = await reproject_owned(pool, config, wait_seconds=args.wait_seconds)
            print("reproject: rebuilt by the process holding the projector" if folded is None else
                  f"reproject: {folded} events folded")  # fmt: skip
            return 0
    if args.command == "points":
        from indexer.points.runner import compute_points
        from indexer.service import open_database

        async with open_database(config) as pool:
            rows = await compute_points(pool, config, args.through)
        print(f"points: {rows} staker-days computed through {args.through}")
        return 0
    if args.command in ("rewards", "epochs", "proof"):
        import json

        from indexer.epochs.close import add_reward, close_epoch, proof
        from indexer.service import open_database

        async with open_database(config) as pool:
            if args.command == "rewards":
                await add_reward(pool, config, args.epoch, args.validator, args.asset, args.amount)
                print(f"reward recorded: epoch {args.epoch} validator {args.validator} {args.amount} {args.asset}")
            elif args.command == "epochs":
                result = await close_epoch(pool, config, args.epoch)
                state = "already closed" if result.already_closed else "closed"
                print(f"epoch {result.epoch} {state}: root {result.root or '(no leaves)'} total {result.total}")
            else:
                print(json.dumps(await proof(pool, args.epoch, args.staker), indent=2))
        return 0
    if args.command == "demo":
        from indexer.demo import run_demo

        return await run_demo(config, seed=args.seed)
    raise AssertionError(args.command)


def _first_indexer_error(exc: BaseException) -> IndexerError | None:
    if isinstance(exc, IndexerError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_indexer_error(inner)
            if found is not None:
                return found
    return None


def _stopped_while_starting(signum: int, frame: object) -> None:
    """SIGTERM before `run` has installed its own handler: nothing is written yet, so a clean stop."""
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `run` stops cleanly on SIGTERM even before the service takes it over (`service.run`); any other command
    # interrupted by it must not exit 0 as if it had done its work.
    signal.signal(signal.SIGTERM, _stopped_while_starting if args.command == "run" else signal.SIG_DFL)
    from indexer.logs import configure_logging

    configure_logging(args.log_level)
    try:
        return asyncio.run(_dispatch(args))
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one line on stderr
        if isinstance(exc, SystemExit):
            raise
        error = _first_indexer_error(exc)
        if error is not None:
            print(f"indexer: error: {error}", file=sys.stderr)
            return 2 if type(error).__name__ == "ConfigError" else 1
        if args.log_level == "debug":
            traceback.print_exception(exc)
        print(
            f"indexer: internal error: {type(exc).__name__}: {exc} (rerun with --log-level debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
