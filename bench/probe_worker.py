"""``voe worker`` that also notes when its first job arrives (for time-to-first-job figures).

    python bench/probe_worker.py FILE worker [voe worker options...]

Runs the real ``voe worker`` command; the only addition is that the first call of
``Worker.search`` writes the time (epoch seconds) to FILE.
"""

from gevent import monkey

monkey.patch_all()

# ruff: noqa: E402  (imports after monkey-patching, as gevent requires)
import sys
import time
from pathlib import Path

from voe.cli import main as cli
from voe.model import Result, SearchJob
from voe.worker.loop import Worker

_search = Worker.search
_first_job_file = Path(sys.argv[1])
_seen = False


def _noting_search(self: Worker, job: SearchJob) -> Result:
    """Note the first job's arrival, then search as usual."""
    global _seen
    if not _seen:
        _seen = True
        _first_job_file.write_text(f"{time.time():.6f}\n", encoding="utf-8")
    return _search(self, job)


Worker.search = _noting_search  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[2:]))
