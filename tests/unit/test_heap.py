"""The server's heap settling, run in a fresh interpreter so this test process keeps its own collector settings."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json
import gpufleet.api.app  # what the server has imported by the time it settles
from gpufleet.api.heap import YOUNG_THRESHOLD, settle_heap
before = (gc.get_freeze_count(), gc.get_threshold())
settle_heap()
after = (gc.get_freeze_count(), gc.get_threshold())
garbage = []
garbage.append(garbage)  # a cycle made after settling is still collected
del garbage
print(json.dumps({"before": before, "after": after, "young": YOUNG_THRESHOLD, "collected": gc.collect()}))
"""


def test_settling_freezes_what_the_process_started_with_and_still_collects_new_cycles() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    found = json.loads(out.stdout)
    assert found["before"][0] == 0
    assert found["after"][0] > 10_000  # the imported modules' objects, out of the collector's passes
    assert found["after"][1][0] == found["young"] != found["before"][1][0]
    assert found["after"][1][1:] == found["before"][1][1:]
    assert found["collected"] >= 1
