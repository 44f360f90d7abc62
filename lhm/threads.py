"""Thread limits for the optimisation loops (body fit, Fit engine)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba
import torch


@contextlib.contextmanager
def limited_threads(torch_threads: int = 1, numba_threads: int | None = None) -> Iterator[None]:
    """Run the body with ``torch_threads`` torch threads (and ``numba_threads`` numba threads if given), then restore.

    The fitting loops run many small ops (one value per Gaussian or splat): on 2 cores extra threads
    cost synchronisation, not work (benchmarks/RESULTS.md, "Body fitting"). Both settings belong to
    the calling thread (OpenMP's and numba's thread counts are per thread), so concurrent requests of
    a server each limit and restore their own.
    """
    saved = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(torch_threads)
    if numba_threads is not None:
        numba.set_num_threads(min(numba_threads, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        numba.set_num_threads(saved[1])
