"""The registry benchmark's ratios, targets and printed table, computed from its rows."""

from __future__ import annotations

from typing import Any

SUITE = "registry"
OURS_SNAPSHOT = "rlreg Registry.snapshot"
OURS_LOAD = "rlreg Registry.load"
# case: (rlreg's system, the baseline's system, the highest rlreg ÷ baseline allowed)
TIME_TARGETS = {  # (durable against durable: rlreg's snapshot fsyncs its objects and its event)
    "snapshot": (OURS_SNAPSHOT, "safetensors save_file + fsync", 1.5),
    "load": (OURS_LOAD, "build + safetensors load_file", 1.0),
}
# case: (rlreg's system, a peer, the highest rlreg ÷ peer allowed): issue 12's second snapshot target
# (RLlib's save_to_path does not fsync, rlreg's snapshot does: the second row compares durable with durable)
PEER_TARGETS = {"snapshot": [(OURS_SNAPSHOT, "RLlib save_to_path", 2.0),
                             (OURS_SNAPSHOT, "RLlib save_to_path + fsync", 2.0)]}
# case: (rlreg's system, the baseline's system): a ratio, no target
TIME_RATIOS = {"first load in a new process": ("rlreg Registry(...).load", "build + safetensors load_file")}
WRITTEN_TARGET = 1.1  # repeated snapshots: rlreg's bytes written ÷ bytes changed, at most
MB = 1e6


def _find(rows: list[dict], case: str, system: str) -> dict | None:
    return next((r for r in rows if r["case"] == case and r["system"] == system), None)


def finish(rows: list[dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
    """Add the suite, rlreg ÷ peer ratios, written ÷ changed, targets met, equal-module notes."""
    rows = [{"suite": SUITE, **r} for r in rows]
    for case, (ours_system, base_system, limit) in TIME_TARGETS.items():
        ours, base = _find(rows, case, ours_system), _find(rows, case, base_system)
        for r in rows:
            if r["case"] == case and r["value"] and ours and ours["value"]:
                r["rlreg_over_this"] = ours["value"] / r["value"]
        if ours and base and ours["value"] and base["value"]:
            ratio = ours["value"] / base["value"]
            ours.update(target=f"<= {limit:g} x {base_system}", target_ratio=ratio, ok=ratio <= limit)
    for case, targets in PEER_TARGETS.items():
        for ours_system, peer_system, limit in targets:
            ours, peer = _find(rows, case, ours_system), _find(rows, case, peer_system)
            if ours and peer and ours["value"] and peer["value"]:
                ratio = ours["value"] / peer["value"]
                ours.setdefault("peer_targets", []).append(
                    {"target": f"<= {limit:g} x {peer_system}", "ratio": ratio, "ok": ratio <= limit})
    for case, (ours_system, _) in TIME_RATIOS.items():
        ours = _find(rows, case, ours_system)
        for r in rows:
            if r["case"] == case and r["value"] and ours and ours["value"]:
                r["rlreg_over_this"] = ours["value"] / r["value"]
    for r in rows:
        if r["case"] == "repeated snapshots" and r["value"] is not None and r.get("changed_bytes"):
            r["written_over_changed"] = r["value"] / r["changed_bytes"]
            if r["system"] == OURS_SNAPSHOT:
                r.update(target=f"<= {WRITTEN_TARGET:g} x bytes changed",
                         ok=r["written_over_changed"] <= WRITTEN_TARGET)
    _note_unequal_modules(rows)
    return rows


def _note_unequal_modules(rows: list[dict]) -> None:
    ours = _find(rows, "snapshot", OURS_SNAPSHOT)
    if not ours or "params" not in ours:
        return
    for r in rows:
        if "params" in r and r["params"] != ours["params"]:
            r["note"] = f"not an equal module: {r['params']} parameters, rlreg's has {ours['params']}"


def format_table(rows: list[dict[str, Any]], config: dict[str, Any], quick: bool) -> str:
    """The table printed by the suite."""
    ours = _find(rows, "snapshot", OURS_SNAPSHOT) or {}
    size = ours.get("state_bytes", 0)
    lines = [
        f"registry benchmark ({'quick' if quick else 'full'}): PPO module "
        f"{config['model_config']['fcnet_hiddens']} x2 encoders, {ours.get('params', 0) / 1e6:.2f} M "
        f"float32 parameters = {size / MB:.1f} MB; {config['repeats']} runs each, ratios of medians.",
        "rlreg on a SQLite file + local blob folder. Each timed run starts after os.sync(); files are"
        " read back from the page cache; the 2 cores and the disk are shared with other work.",
        "First load in a new process: imports before the clock; rlreg's time includes opening the Registry.",
    ]
    versions = sorted({r["version"] for r in rows if r.get("version")})
    if versions:
        lines.append(f"peers in .venv-peers: {', '.join(versions)}.")
    lines += _time_section(rows, "snapshot", "snapshot (a new version of the whole module)", size)
    lines += _time_section(rows, "load", "load (a module ready to use: built + state loaded)", size)
    lines += _time_section(rows, "first load in a new process",
                           "first load in a new process (imports untimed)", size)
    lines += _written_section(rows, config)
    return "\n".join(lines)


def _time_section(rows, case: str, title: str, size: int) -> list[str]:
    written = case == "snapshot"
    out = ["", f"{title:<52}{'median s':>9}{'best s':>8}{'MB/s':>7}{'written MB' if written else '':>11}"
               f"{'rlreg/this':>11}  target"]
    for r in (r for r in rows if r["case"] == case):
        if r["value"] is None:
            out.append(f"  {r['system']:<50}skipped: {r['skipped']}")
            continue
        rate = size / r["value"] / MB if size else 0.0
        wrote = f"{r['written_bytes'] / MB:.1f}" if written and "written_bytes" in r else ""
        line = (f"  {r['system']:<50}{r['value']:>9.3f}{r.get('best', r['value']):>8.3f}{rate:>7.0f}"
                f"{wrote:>11}{r.get('rlreg_over_this', 0):>11.2f}")
        if "target" in r:
            line += f"  {r['target']}: {r['target_ratio']:.2f} {'ok' if r['ok'] else 'MISSED'}"
        for t in r.get("peer_targets", []):
            line += f"; {t['target']}: {t['ratio']:.2f} {'ok' if t['ok'] else 'MISSED'}"
        out.append(line + (f"  ({r['note']})" if "note" in r else ""))
    return out


def _written_section(rows, config) -> list[str]:
    n, small = config["snapshots"], config["small_tensor_bytes"]
    out = ["", f"{f'snapshots 2..{n}: only tensors <= {small >> 10} KiB change':<52}"
               f"{'changed MB':>11}{'written MB':>12}{'written/changed':>17}{'s each':>9}  target"]
    for r in (r for r in rows if r["case"] == "repeated snapshots"):
        if r["value"] is None:
            out.append(f"  {r['system']:<50}skipped: {r['skipped']}")
            continue
        line = (f"  {r['system']:<50}{r['changed_bytes'] / MB:>11.3f}{r['value'] / MB:>12.3f}"
                f"{r['written_over_changed']:>17.2f}{r.get('seconds_each', 0):>9.3f}")
        if "target" in r:
            line += f"  {r['target']}: {'ok' if r['ok'] else 'MISSED'}"
        if r.get("process_write_bytes"):
            line += f"  (all writes of the process: {r['process_write_bytes'] / MB:.3f} MB)"
        out.append(line)
    return out
