"""``python -m bench [SUITE ...] [--quick] [--json PATH]``: run the named suites (default: all)."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench import EXTRA_SUITES, SUITES


def run_suite(name: str, quick: bool) -> list[dict[str, Any]]:
    """Import ``bench.<name>`` and run it; rows are tagged with their suite."""
    module = importlib.import_module({**SUITES, **EXTRA_SUITES}[name])
    print(f"\n=== {name}{' (quick)' if quick else ''} ===", flush=True)
    return [{"suite": name, **row} if "suite" not in row else row for row in module.run(quick)]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the suites, optionally write all rows as JSON."""
    known = [*SUITES, *EXTRA_SUITES]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"one of: {', '.join(known)} (default: {', '.join(SUITES)})")
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repeats")
    parser.add_argument("--json", metavar="PATH", help="also write every row to PATH as JSON")
    args = parser.parse_args(argv)
    unknown = [s for s in args.suites if s not in known]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; known: {', '.join(known)}")
    rows: list[dict[str, Any]] = []
    started = time.time()
    for name in args.suites or list(SUITES):
        rows += run_suite(name, args.quick)
    if args.json:
        report = {"machine": platform.platform(), "python": sys.version.split()[0], "quick": args.quick,
                  "started": started, "rows": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"\nwrote {len(rows)} rows to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
