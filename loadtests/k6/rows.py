"""Write the store's hold-out rows as the JSON list the k6 and JMeter scenarios read.

python -m loadtests.k6.rows --store model_store > rows.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from loadtests.bodies import holdout_rows

SCRIPTS = Path(__file__).resolve().parent
"""Where the k6 scripts are."""


def rows_json(store: Path) -> bytes:
    """The hold-out rows as a JSON list of lists of numbers."""
    return orjson.dumps(holdout_rows(store).tolist())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.k6.rows", description=__doc__)
    parser.add_argument("--store", type=Path, default=Path("model_store"))
    args = parser.parse_args(argv)
    sys.stdout.buffer.write(rows_json(args.store))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
