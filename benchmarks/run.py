"""Regenerate ``benchmarks/RESULTS.md`` from nothing: accuracy/calibration and speed.

Runs ``real_data.py`` (every crowdbayes model and crowd-kit's aggregators on every dataset with
gold under ``CROWDBAYES_DATA``) and ``speed.py`` (crowdbayes vs hand-written NumPyro vs
crowd-kit EM on simulated data), each in a subprocess, then writes RESULTS.md with the machine,
the package versions and the commands used, followed by both reports.

Usage (from the repository root; ``make bench`` / ``make bench-quick`` call this)::

    python benchmarks/run.py            # full: 2.5k to 1M labels, 4 x (1000 + 1000)
    python benchmarks/run.py --quick    # 2.5k and 25k labels, rte only
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one dataset")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args(argv)
    python = sys.executable
    if args.quick:
        real = ["--datasets", "rte", "--out", str(HERE / "REAL_DATA.quick.md")]
        speed = ["--sizes", "2500,25000", "--out", str(HERE / "SPEED.quick.md")]
    else:
        real = ["--out", str(HERE / "REAL_DATA.md")]
        speed = ["--sizes", "2500,25000,250000,1000000", "--out", str(HERE / "SPEED.md")]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    commands = [
        [python, str(HERE / "real_data.py"), *real],
        [python, str(HERE / "speed.py"), *speed],
    ]
    status = 0
    for cmd in commands:
        print("+", " ".join(cmd[1:]), flush=True)
        status |= subprocess.run(cmd, env=env).returncode
    parts = [Path(real[-1]), Path(speed[-1])]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    header = (
        "# crowdbayes benchmark results\n\n"
        f"Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by "
        f"`python benchmarks/run.py{' --quick' if args.quick else ''}` on "
        f"{platform.platform()}, {cpus} CPU(s), Python {platform.python_version()}. "
        "Timings on shared machines are noisy: read the ratios between engines, which ran "
        "one after the other in the same command.\n\n"
    )
    body = "\n\n".join(p.read_text() for p in parts if p.exists())
    Path(args.out).write_text(header + body)
    print(f"wrote {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
