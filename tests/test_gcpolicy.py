"""The roles' garbage-collector policy: startup frozen, collections rare, cycles still freed."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import gc, weakref
from voe import gcpolicy

class Node:
    pass

before = gc.get_freeze_count()
gcpolicy.settle()
assert gc.get_freeze_count() > before, "startup's objects are frozen"
assert gc.get_threshold() == (gcpolicy.YOUNG, gcpolicy.MIDDLE, gcpolicy.OLD)
node = Node()
node.self = node  # a cycle made after settling: reference counting alone never frees it
alive = weakref.ref(node)
del node
assert alive() is not None
gc.collect(0)
assert alive() is None, "a young collection frees it"
print("ok")
"""


def test_settle_freezes_startup_and_a_later_cycle_is_still_freed():
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
