"""The garbage collector's policy in voe's long-running roles (master, worker, sink).

Every job makes a few dozen short-lived containers (a message's lists, a job, its fares,
a result) and almost none of them form cycles, so CPython's default thresholds run a
young collection every few results, and the older generations, which walk everything
the process keeps (imported modules, the master's leases), far more often than the
little cyclic garbage needs. Measured on a worker and a sink of the null-job pipeline,
collections were a sixth to a third of the CPU per job. So, once a role has started:

- ``gc.freeze()`` moves what startup made (modules, settings, the plan) out of every
  later collection, as Instagram does for its long-lived servers. No full collection
  comes first: it found about 20 unreachable objects in a master that had just started
  and took 7 ms of its start (20 ms of a sink's), for a few kilobytes kept;
- the youngest generation is collected after ``YOUNG`` allocations instead of 700, and
  the older ones less often, which bounds the garbage kept between collections to a few
  megabytes at most while collections stay rare.

Reference counting frees everything without cycles at once, as before; only cyclic
garbage waits a little longer.
"""

from __future__ import annotations

import gc

# Container allocations (less deallocations) between two young collections (CPython: 700).
YOUNG = 50_000
# Young collections between two middle ones, and middle ones between two full ones.
MIDDLE = 20
OLD = 20


def settle() -> None:
    """Freeze what startup made and collect rarely from now on (call once the role is set up)."""
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
