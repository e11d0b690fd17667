"""Hostile pickles, decoded by rlmodule.pickle_free under an audit hook (run as a script).

`python hostile_pickles.py CANARY CONTROL_CANARY` decodes each blob and prints JSON
{"report": {name: [refused?, message, audit events seen], ...}, "canary_after_decode": bool,
"control": events}: the control, run last, unpickles the os.system blob (touching CONTROL_CANARY)
with the real pickle module, to show the canary and the audit hook do catch code that runs.
"""

from __future__ import annotations

import json
import os
import pickle
import sys

WATCHED = ("os.system", "subprocess.Popen", "exec", "compile", "os.exec", "os.posix_spawn",
           "os.spawn", "pickle.find_class", "import", "open", "ctypes", "builtins.input")


def blobs(canary: str) -> dict[str, bytes]:
    touch = f"touch {canary}".encode()
    code = f"open({canary!r}, 'w').write('ran')".encode()

    class Sys:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {canary}",))

    return {
        "os.system (protocol 5)": pickle.dumps(Sys(), protocol=5),
        "os.system (protocol 0 GLOBAL)": b"cos\nsystem\n(S'" + touch + b"'\ntR.",
        "posix.system": b"cposix\nsystem\n(S'" + touch + b"'\ntR.",
        "builtins.eval": b"cbuiltins\neval\n(S\"" + code + b"\"\ntR.",
        "builtins.exec": b"cbuiltins\nexec\n(S\"" + code + b"\"\ntR.",
        "builtins.getattr trick": b"cbuiltins\ngetattr\n(cos\nsystem\nS'x'\ntR.",
        "subprocess.Popen": b"csubprocess\nPopen\n((S'touch'\nS'" + canary.encode() + b"'\nltR.",
        "numpy runstring": b"cnumpy.testing._private.utils\nrunstring\n(S\"" + code + b"\"\n(dtR.",
        "numpy.load of a pickle": b"cnumpy\nload\n(S'" + canary.encode() + b"'\ntR.",
        "INST opcode": b"(V" + touch + b"\nios\nsystem\n.",
        "OBJ opcode": b"(ccollections\nOrderedDict\nV" + touch + b"\no.",  # allowed class, bad opcode
        "nested reduce on a dtype": b"cnumpy\ndtype\n(Vf4\ntR(V" + touch + b"\ntR.",
        "object-dtype array": pickle.dumps(__import__("numpy").array([1, "x"], dtype=object), protocol=4),
        "object-dtype array (numpy 1 names)": pickle.dumps(
            __import__("numpy").array([None], dtype=object), protocol=2),
        "EXT1 opcode": b"\x80\x02\x82\x01.",
        "persistent id": b"\x80\x02X\x01\x00\x00\x00xQ.",
        "cloudpickle by value": b"\x80\x04\x8c\x17cloudpickle.cloudpickle\x94\x8c\x14_make_skeleton_class"
                                b"\x94\x93\x94)R.",
        "__main__ class": b"c__main__\nMyPolicy\n)\x81.",
    }


def main() -> None:
    canary, control_canary = sys.argv[1], sys.argv[2]
    from rlmodule.errors import PickleRefusedError
    from rlmodule.pickle_free import decode
    from rlmodule.rllib_globals import RLLIB_GLOBALS

    data = blobs(canary)
    b"x".decode("raw_unicode_escape")  # load the codec protocol 0's strings use before watching
    seen: list[str] = []
    sys.addaudithook(lambda event, args: seen.append(event) if event.startswith(WATCHED) else None)
    report = {}
    for name, blob in data.items():
        seen.clear()
        try:
            decode(blob, RLLIB_GLOBALS, what=name)
            report[name] = [False, "decoded", sorted(set(seen))]
        except PickleRefusedError as e:
            report[name] = [True, str(e), sorted(set(seen))]
    decoded_canary = os.path.exists(canary)
    seen.clear()
    pickle.loads(blobs(control_canary)["os.system (protocol 5)"])  # the control: real unpickling
    print(json.dumps({"report": report, "canary_after_decode": decoded_canary,
                      "control": sorted(set(seen))}))


if __name__ == "__main__":
    main()
