"""`sgl bench check`: how long `sgl check` takes on every example, interpreter start included.

Target (issue 2): ≤ 0.3 s wall per example. The bare interpreter start (`python -c pass`) is
measured in the same run, so the table also shows what SGL itself adds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sgl.bench import publish

TARGET_S = 0.3


def _wall(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_check_bench(files: list[Path], repeats: int = 5) -> dict:
    python = _wall([sys.executable, "-c", "pass"], repeats)
    rows = {}
    for path in files:
        rows[str(path)] = round(_wall([sys.executable, "-m", "sgl.cli", "check", str(path)], repeats), 4)
    worst = max(rows.values()) if rows else None
    return {"repeats": repeats, "python_start_s": round(python, 4), "files": rows,
            "worst_s": worst, "target_s": TARGET_S, "meets_target": worst is not None and worst <= TARGET_S}


def format_table(result: dict) -> str:
    lines = [f"sgl check, wall seconds, median of {result['repeats']} (interpreter start alone: "
             f"{result['python_start_s']:.3f} s)"]
    for name, seconds in result["files"].items():
        lines.append(f"  {seconds:7.3f}  {name}")
    verdict = "ok" if result["meets_target"] else "over target"
    lines.append(f"worst {result['worst_s']:.3f} s (target ≤ {result['target_s']} s: {verdict})")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sgl bench check", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="programs (default: examples/*.sgl)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", dest="json_path", metavar="PATH", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    files = [Path(f) for f in args.files] or sorted(Path("examples").glob("*.sgl"))
    result = run_check_bench(files, args.repeats)
    return publish(result, format_table(result), args.json_path)


if __name__ == "__main__":
    raise SystemExit(main())
