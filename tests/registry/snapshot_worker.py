"""A process of the concurrency test: says ``ready``, waits for a line on stdin, snapshots, prints versions."""

from __future__ import annotations

import json
import sys

import registry_toys as toys

from registry import Registry


def main() -> None:
    """``snapshot_worker.py DB_URL STORAGE_URL NAME COUNT WORKER_ID``."""
    db_url, storage_url, name, count, worker = sys.argv[1:6]
    reg = Registry(db_url, storage_url)
    module = toys.spec().build()
    print("ready", flush=True)
    sys.stdin.readline()
    versions = []
    for i in range(int(count)):
        toys.train_step(module, int(worker) * 1000 + i)
        versions.append(reg.snapshot(name, module, {"worker": int(worker), "i": i}).version)
    print(json.dumps(versions), flush=True)
    reg.close()


if __name__ == "__main__":
    main()
