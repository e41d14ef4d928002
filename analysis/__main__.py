"""Command line of the analysis package.

    python -m analysis --storage studies/loss_mix                  # the report (default)
    python -m analysis report --tracking-uri URI --experiment NAME --output DIR
    python -m analysis reevaluate --storage studies/loss_mix --data synthetic --front
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

COMMANDS = ("report", "reevaluate")


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", type=Path, help="study folder (contains study.yaml and mlflow.db)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI, instead of or over the study folder's")
    parser.add_argument("--experiment", help="MLflow experiment name (the study name)")
    parser.add_argument("--output", type=Path, help="output folder (default: inside the study folder)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description="Report on or re-evaluate a finished study.")
    commands = parser.add_subparsers(dest="command", required=True)

    report = commands.add_parser("report", help="write the report folder and log it to MLflow (default)")
    _add_source(report)
    report.add_argument("--no-mlflow-log", action="store_true", help="do not log the report to the study's MLflow run")

    again = commands.add_parser("reevaluate", help="evaluate saved checkpoints on a dataset's test splits")
    _add_source(again)
    again.add_argument("--data", required=True, help="'synthetic' or a dataset config file")
    again.add_argument("--data-root", help="replaces the dataset config's data root")
    choice = again.add_mutually_exclusive_group()
    choice.add_argument("--configs", help="comma-separated configuration ids, e.g. c0001,c0003")
    choice.add_argument("--front", action="store_true", help="the configurations on the validation front")
    again.add_argument("--image-size", type=int, help="network input side (default: the study's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["report", *argv]
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from analysis.records import RecordsError
    from analysis.reevaluate import CheckpointError

    try:
        if args.command == "report":
            from analysis.report import front_summary, write_report

            folder = write_report(args.storage, args.tracking_uri, args.experiment, args.output, not args.no_mlflow_log)
            print(f"Report: {folder}")
            print("Pareto front (validation seed means):")
            print(front_summary(folder))
        else:
            from analysis.reevaluate import reevaluate

            configs = [item.strip() for item in args.configs.split(",") if item.strip()] if args.configs else None
            folder = reevaluate(
                args.storage, args.tracking_uri, args.experiment, data=args.data, configs=configs,
                front=args.front, image_size=args.image_size, data_root=args.data_root, output=args.output,
            )
            print(f"Re-evaluation: {folder}")
            print((folder / "reevaluation.md").read_text())
    except (RecordsError, CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
