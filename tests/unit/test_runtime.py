"""The server process's settling, run in a fresh interpreter so this test process keeps its own collector settings."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json, sys
import gpufleet.api.app  # what the server has imported by the time it settles
from gpufleet.api.runtime import SWITCH_INTERVAL_S, YOUNG_THRESHOLD, settle_process
before = (gc.get_freeze_count(), gc.get_threshold(), sys.getswitchinterval())
settle_process()
after = (gc.get_freeze_count(), gc.get_threshold(), sys.getswitchinterval())
garbage = []
garbage.append(garbage)  # a cycle made after settling is still collected
del garbage
found = {"before": before, "after": after, "young": YOUNG_THRESHOLD, "switch": SWITCH_INTERVAL_S}
print(json.dumps({**found, "collected": gc.collect()}))
"""


def test_settling_freezes_the_startup_heap_hands_the_lock_round_sooner_and_still_collects_new_cycles() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    found = json.loads(out.stdout)
    assert found["before"][0] == 0
    assert found["after"][0] > 10_000  # the imported modules' objects, out of the collector's passes
    assert found["after"][1][0] == found["young"] != found["before"][1][0]
    assert found["after"][1][1:] == found["before"][1][1:]
    assert found["after"][2] == found["switch"] < found["before"][2]
    assert found["collected"] >= 1
