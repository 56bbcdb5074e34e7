"""Cold start: process start to the first 200 from POST /v1/predict.

.venv/bin/python bench/cold_start.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics

from common import print_table, server, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    seconds = []
    for _ in range(args.runs):
        with server() as (_, _, startup):
            seconds.append(startup)
    rows = [[f"run {i + 1}", s] for i, s in enumerate(seconds)]
    rows.append(["median", statistics.median(seconds)])
    print_table(["", "seconds to first answer"], rows)
    print(f"written to {write_result('cold_start', {'seconds': seconds})}")


if __name__ == "__main__":
    main()
