"""Logging for the Snakemake script adapters: everything a job prints lands in its ``log:`` file."""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def job_log(path: str | None) -> Iterator[logging.Logger]:
    """Send stdout, stderr and the ``dmmvae`` logger to ``path``; log any exception before re-raising.

    The block is a whole workflow job: its process exits right after it. On success the
    garbage collector is frozen (:func:`gc.freeze`), so the interpreter's shutdown no longer
    walks every object that torch, jax, scanpy and numba created: a job's exit took ~1.3 s
    after importing the evaluation stack, 0.14 s frozen (measured on 2 cores). Outputs are
    closed before the block ends (atomic writes), so nothing is left unflushed.
    """
    logger = logging.getLogger("dmmvae")
    logger.setLevel(logging.INFO)
    if path is None:
        yield logger
        gc.freeze()
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = fh
        try:
            yield logger
        except BaseException:
            fh.write(traceback.format_exc())
            raise
        finally:
            sys.stdout, sys.stderr = old_out, old_err
            logger.removeHandler(handler)
    gc.freeze()
