"""Multi-process training: 2 processes on 127.0.0.1 (2 CPU devices each) vs one process.

Three subprocesses start together (`_parallel_worker.py process`): two join one
`jax.distributed` run through a coordinator on a free local port, the third trains
alone as the reference. Each writes its results; every wait is bounded, and a process
still running at the deadline is killed and the test fails.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from _parallel_support import F32, WORKER, assert_history_close, leaves, tail, worker_env

TIMEOUT_S = 180  # all three together; ~30 s on an idle 2-core machine
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # the OS picks a free port; local only
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """{"ref", 0, 1}: (arrays, info) of the reference and of the two processes."""
    out = tmp_path_factory.mktemp("distributed")
    env = worker_env(out, "")
    port = free_port()
    jobs = {0: [port, 2, 0], 1: [port, 2, 1], "ref": [0, 1, 0]}
    procs, logs = {}, {}
    for name, args in jobs.items():
        logs[name] = out / f"log_{name}.txt"
        with open(logs[name], "w") as f:
            cmd = [sys.executable, str(WORKER), "process", str(out), str(data_dir)]
            procs[name] = subprocess.Popen(
                cmd + [str(a) for a in args], env=env, stdout=f, stderr=subprocess.STDOUT
            )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for name, proc in procs.items():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"process {name} still running after {TIMEOUT_S} s:\n{tail(logs[name])}"
                )
    finally:
        for proc in procs.values():  # only the processes started here
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, proc in procs.items():
        assert proc.returncode == 0, f"process {name} failed:\n{tail(logs[name])}"
    files = {0: "process0_of2", 1: "process1_of2", "ref": "process0_of1"}
    return {
        name: (dict(np.load(out / f"{f}.npz")), json.loads((out / f"{f}.json").read_text()))
        for name, f in files.items()
    }


def test_processes_form_one_mesh(runs):
    for pid in (0, 1):
        assert runs[pid][1]["process_count"] == 2 and runs[pid][1]["devices"] == 4
    assert runs["ref"][1]["process_count"] == 1
    # Each process holds one contiguous half of every batch of 32.
    assert runs[0][1]["local_rows"] == [0, 16] and runs[1][1]["local_rows"] == [16, 32]


def test_both_processes_hold_the_same_params(runs):
    for what in ("fit", "loop"):
        for a, b in zip(leaves(runs[0][0], what), leaves(runs[1][0], what), strict=True):
            np.testing.assert_array_equal(a, b)


def test_two_process_fit_matches_one_process(runs):
    ref_arrays, ref_info = runs["ref"]
    for pid in (0, 1):
        arrays, info = runs[pid]
        for a, b in zip(leaves(ref_arrays, "fit"), leaves(arrays, "fit"), strict=True):
            assert b.dtype == np.float32
            np.testing.assert_allclose(b, a, **F32)
        assert_history_close(info["fit"], ref_info["fit"], **F32)
        np.testing.assert_allclose(info["evaluate"]["loss"], ref_info["evaluate"]["loss"], **F32)


def test_process_local_batches_match_one_process(runs):
    """A custom loop where each process reads only its rows of every global batch."""
    for pid in (0, 1):
        pairs = zip(leaves(runs["ref"][0], "loop"), leaves(runs[pid][0], "loop"), strict=True)
        for a, b in pairs:
            np.testing.assert_allclose(b, a, **F32)
        np.testing.assert_allclose(runs[pid][1]["loop_loss"], runs["ref"][1]["loop_loss"], **F32)


def test_multi_process_checkpoint_restores_exactly(runs):
    for pid in (0, 1):
        arrays, info = runs[pid]
        for a, b in zip(leaves(arrays, "fit"), leaves(arrays, "restored"), strict=True):
            np.testing.assert_array_equal(b, a)
        assert info["restored"]["epoch"] == 2
        assert info["restored"]["history"]["loss"] == info["fit"]["loss"]
        assert "'data': 4" in info["restored_sharding"]


def test_processes_given_different_data_are_refused(runs):
    for pid in (0, 1):
        message = runs[pid][1]["mismatch"]
        assert message.startswith("ValueError") and "processes [1] were given other" in message


def test_sharded_put_and_gather_round_trip(runs):
    """`put` fills each process's devices from its own copy; `to_host` gathers them all."""
    for pid in (0, 1):
        arrays = runs[pid][0]
        np.testing.assert_array_equal(arrays["roundtrip"], arrays["roundtrip_expected"])
