"""Thread limits: per calling thread, restored after use, also when limited blocks of two threads overlap."""
from __future__ import annotations

import threading

import numba
import torch

from lhm.threads import limited_threads


def test_limits_are_per_thread_and_restored_when_blocks_overlap():
    before = torch.get_num_threads(), numba.get_num_threads()
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def other_request():
        with limited_threads(1, 1):
            seen["inside"] = torch.get_num_threads(), numba.get_num_threads()
            entered.set()
            release.wait(10)

    worker = threading.Thread(target=other_request)
    with limited_threads(1, 1):
        worker.start()
        entered.wait(10)
        assert (torch.get_num_threads(), numba.get_num_threads()) == (1, 1) == seen["inside"]
    # this thread left first, while the other still runs limited: its own settings are back at once
    assert (torch.get_num_threads(), numba.get_num_threads()) == before
    release.set()
    worker.join(10)
    assert (torch.get_num_threads(), numba.get_num_threads()) == before
