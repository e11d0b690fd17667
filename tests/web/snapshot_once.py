"""Another process's snapshot: ``python snapshot_once.py DB_URL STORAGE NAME`` prints position and time."""

from __future__ import annotations

import json
import sys
import time

from registry import Registry
from webtoys import spec

if __name__ == "__main__":
    db_url, storage, name = sys.argv[1:4]
    with Registry(db_url, storage) as reg:
        mv = reg.snapshot(name, spec(hidden=4).build(), metadata={"mean_return": 2.0, "from": "another process"})
        print(json.dumps({"position": mv.position, "version": mv.version, "committed": time.time()}), flush=True)
