"""Raw pages of failed attempts, kept in the data dir for the backend's author.

A worker writes the page of every failure that carries one (a ``ParseError``, a
``BlockedError``) to ``pages/`` in its data dir, where `voe reparse` can read it,
one file per cycle and job (a later attempt replaces an earlier one), cut to
``VOE_KEEP_PAGE_BYTES``; the job's error text names the file, so ``voe failed``
shows where it is.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from voe import private
from voe.model import SearchJob

log = logging.getLogger("voe.worker")

PAGES_DIR = "pages"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def page_path(data_dir: Path, job: SearchJob) -> Path:
    """Where the page of ``job`` (in its cycle) is kept: ``pages/CYCLE-JOB_ID.page``."""
    name = _UNSAFE.sub("_", job.id)[:200]
    return data_dir / PAGES_DIR / f"{job.cycle}-{name}.page"


def keep_page(data_dir: Path, job: SearchJob, page: bytes, limit: int) -> Path | None:
    """Write the first ``limit`` bytes of ``page``; return the file, or None if not kept.

    The file (mode 0600) is replaced atomically, so a reader never sees half a page. A disk
    error is logged and only costs the page, never the job's result.
    """
    if limit <= 0:
        return None
    path = page_path(data_dir, job)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        private.make_dir(path.parent)
        partial.unlink(missing_ok=True)  # a stale one would keep its mode
        private.write_file(partial, page[:limit])
        os.replace(partial, path)
    except OSError as error:
        log.warning("could not keep the page of %s in %s: %s", job.id, path, error)
        return None
    return path.resolve()
