"""Command line for dataset configs: ``python -m study.data check --data FILE``.

Exit status: 0 when the check found no errors (warnings allowed), 1 on errors, 2 on a config that
cannot be parsed.
"""

from __future__ import annotations

import argparse
import sys

from study.data.check import check_dataset
from study.data.config import DataConfigError, load_dataset_config

EXIT_OK, EXIT_ERRORS, EXIT_BAD_CONFIG = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m study.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="list counts, sizes and every problem of a dataset")
    check.add_argument("--data", required=True, help="dataset config (YAML) or a shipped preset name")
    check.add_argument("--data-root", default=None, help="folder that replaces the config's root")
    check.add_argument(
        "--image-size", type=int, default=None, help="network input side in pixels (default: the config's)"
    )
    check.add_argument(
        "--max-items", type=int, default=None, help="problems listed per kind (default: all)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_dataset_config(args.data, data_root=args.data_root)
    except DataConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        report = check_dataset(config, image_size=args.image_size)
    except ValueError as error:  # an invalid --image-size
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    print(report.format(max_items=args.max_items))
    return EXIT_OK if report.ok else EXIT_ERRORS


if __name__ == "__main__":
    sys.exit(main())
