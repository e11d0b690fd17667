"""A process of the gc race and kill tests: ``writer`` snapshots (a line per version) (optionally stalling between upload and commit), ``gc`` collects in a loop.

``gc_race_worker.py writer DB STORAGE NAME COUNT WRITER_ID STALL_SECONDS`` prints
``{"versions": [...], "puts": N, "errors": [...]}``; ``gc_race_worker.py gc DB STORAGE GRACE STOP_FILE`` prints
``{"runs": N, "reclaimed": N}``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time

import fault_toys

from registry import ConflictError, Registry


def writer(db: str, storage: str, name: str, count: str, writer_id: str, stall: str) -> None:
    reg = Registry(db, storage)
    module = fault_toys.spec().build()
    puts, real_begin_put, real_put = [0], reg.store.begin_put, reg.store.put

    def begin_put(tensors, **kwargs):  # a snapshot's put
        pending = real_begin_put(tensors, **kwargs)
        pending.wait()
        puts[0] += 1
        if float(stall) and puts[0] % 2 == 1:
            time.sleep(float(stall))  # uploaded, not yet committed: longer than gc's grace
        return pending

    def put(tensors, **kwargs):  # a re-upload
        puts[0] += 1
        return real_put(tensors, **kwargs)

    reg.store.begin_put, reg.store.put = begin_put, put
    out = {"versions": [], "errors": []}
    for k in range(int(count)):
        fault_toys.step(module, int(writer_id), k)
        try:
            out["versions"].append(reg.snapshot(name, module, {"k": k}).version)
            print(f"version {out['versions'][-1]}", flush=True)
        except ConflictError as exc:  # ObjectsCollectedError: the clear error a stalled writer may get
            out["errors"].append(str(exc))
        if k == 0:
            reg.set_retention(name, keep_last=2)
    print(json.dumps({**out, "puts": puts[0]}), flush=True)
    reg.close()


def collector(db: str, storage: str, grace: str, stop_file: str) -> None:
    reg = Registry(db, storage)
    runs = reclaimed = 0
    while not os.path.exists(stop_file):
        reclaimed += reg.gc(grace=dt.timedelta(seconds=float(grace))).reclaimed_objects
        runs += 1
        time.sleep(0.2)
    print(json.dumps({"runs": runs, "reclaimed": reclaimed}), flush=True)
    reg.close()


if __name__ == "__main__":
    {"writer": writer, "gc": collector}[sys.argv[1]](*sys.argv[2:])
