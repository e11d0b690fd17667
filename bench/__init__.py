"""rlreg's benchmarks: ``python -m bench [SUITE ...] [--quick] [--json PATH]``.

Each suite is a module ``bench.<name>`` with ``run(quick: bool) -> list[dict]`` that prints its own
table and returns its rows (JSON-able dicts). Adding a suite is one line in ``SUITES``.
"""

from __future__ import annotations

# name -> module; `python -m bench` runs them all in this order.
SUITES: dict[str, str] = {
    "storage": "bench.storage",
    "registry": "bench.registry",  # includes the event-store rows (bench.eventstore)
    "snapshots": "bench.snapshots",  # issue 12's targets: snapshot/load/rlreg:// /S3 ratios
    "cli": "bench.cli",  # read commands' start-up against `python -c "import sqlalchemy"`
}
# Runnable by name, but already part of another suite's run.
EXTRA_SUITES: dict[str, str] = {
    "eventstore": "bench.eventstore",
    "web": "bench.web",  # rlreg serve's pages with 10,000 versions
    "eventstore_scale": "bench.eventstore_scale",
    "anatomy": "bench.anatomy",  # where a synchronous snapshot's time goes (the evidence behind snapshots' rows)
    "cancel": "bench.cancel",  # issue 10: Ctrl-C during an S3 import stops within 1 s  # 10k/100k/1M events: minutes; run it by name
}
