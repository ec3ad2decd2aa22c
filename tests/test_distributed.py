"""Multi-process training: 2 processes on 127.0.0.1 (2 CPU devices each) vs one process.

`python -m jnet.distributed --processes 2` starts two processes of `_parallel_worker.py
process`, joined by `jax.distributed.initialize` through a coordinator on a free port of
127.0.0.1; at the same time the worker runs alone as the reference. Each writes its
results. Every wait is bounded: the launcher ends its processes when one fails or its
timeout passes, and the test kills whatever still runs at its own deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from _parallel_support import F32, WORKER, assert_history_close, leaves, tail, worker_env

TIMEOUT_S = 180  # all three together; ~30 s on an idle 2-core machine
# Every test that starts processes is slow; the flag checks run in-process on the fast path.


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """{"ref", 0, 1}: (arrays, info) of the reference and of the two processes."""
    out = tmp_path_factory.mktemp("distributed")
    env = worker_env(out, "")
    worker = [str(WORKER), "process", str(out), str(data_dir)]
    launcher = [sys.executable, "-m", "jnet.distributed", "--processes", "2"]
    launcher += ["--local-devices", "2", "--timeout", str(TIMEOUT_S - 10), "--log-dir", str(out)]
    commands = {"pair": launcher + worker, "ref": [sys.executable, *worker]}
    procs, logs = {}, {}
    for name, cmd in commands.items():
        logs[name] = out / f"log_{name}.txt"
        with open(logs[name], "w") as f:
            # A session of its own: on a timeout, its whole process group is killed.
            procs[name] = subprocess.Popen(
                cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
            )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for name, proc in procs.items():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} still running after {TIMEOUT_S} s:\n{tail(logs[name])}")
    finally:
        for proc in procs.values():  # only the process groups started here
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for name, proc in procs.items():
        log = tail(logs[name]) + ("\n" + tail(out / "process1.log") if name == "pair" else "")
        assert proc.returncode == 0, f"{name} failed:\n{log}"
    files = {0: "process0_of2", 1: "process1_of2", "ref": "process0_of1"}
    return {
        name: (dict(np.load(out / f"{f}.npz")), json.loads((out / f"{f}.json").read_text()))
        for name, f in files.items()
    }


@pytest.mark.slow
def test_processes_form_one_mesh(runs):
    for pid in (0, 1):
        assert runs[pid][1]["process_count"] == 2 and runs[pid][1]["devices"] == 4
    assert runs["ref"][1]["process_count"] == 1
    # Each process holds one contiguous half of every batch of 32.
    assert runs[0][1]["local_rows"] == [0, 16] and runs[1][1]["local_rows"] == [16, 32]


@pytest.mark.slow
def test_both_processes_hold_the_same_params(runs):
    for what in ("fit", "loop"):
        for a, b in zip(leaves(runs[0][0], what), leaves(runs[1][0], what), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_two_process_fit_matches_one_process(runs):
    ref_arrays, ref_info = runs["ref"]
    for pid in (0, 1):
        arrays, info = runs[pid]
        for a, b in zip(leaves(ref_arrays, "fit"), leaves(arrays, "fit"), strict=True):
            assert b.dtype == np.float32
            np.testing.assert_allclose(b, a, **F32)
        assert_history_close(info["fit"], ref_info["fit"], **F32)
        np.testing.assert_allclose(info["evaluate"]["loss"], ref_info["evaluate"]["loss"], **F32)


@pytest.mark.slow
def test_process_local_batches_match_one_process(runs):
    """A custom loop where each process reads only its rows of every global batch."""
    for pid in (0, 1):
        pairs = zip(leaves(runs["ref"][0], "loop"), leaves(runs[pid][0], "loop"), strict=True)
        for a, b in pairs:
            np.testing.assert_allclose(b, a, **F32)
        np.testing.assert_allclose(runs[pid][1]["loop_loss"], runs["ref"][1]["loop_loss"], **F32)


@pytest.mark.slow
def test_multi_process_checkpoint_restores_exactly(runs):
    for pid in (0, 1):
        arrays, info = runs[pid]
        for a, b in zip(leaves(arrays, "fit"), leaves(arrays, "restored"), strict=True):
            np.testing.assert_array_equal(b, a)
        assert info["restored"]["epoch"] == 2
        assert info["restored"]["history"]["loss"] == info["fit"]["loss"]
        assert "'data': 4" in info["restored_sharding"]


@pytest.mark.slow
def test_processes_given_different_data_are_refused(runs):
    for pid in (0, 1):
        message = runs[pid][1]["mismatch"]
        assert message.startswith("ValueError") and "processes [1] were given other" in message


@pytest.mark.slow
def test_sharded_put_and_gather_round_trip(runs):
    """`put` fills each process's devices from its own copy; `to_host` gathers them all."""
    for pid in (0, 1):
        arrays = runs[pid][0]
        np.testing.assert_array_equal(arrays["roundtrip"], arrays["roundtrip_expected"])


@pytest.mark.slow
def test_launcher_ends_the_run_when_a_process_fails(tmp_path):
    """Process 1 fails at once; process 0 would wait forever: the launcher ends it."""
    script = tmp_path / "one_fails.py"
    script.write_text(
        "import sys, time, jax\nif jax.process_index() == 1:\n    sys.exit(3)\ntime.sleep(600)\n"
    )
    env = worker_env(tmp_path, "")
    start = time.monotonic()
    cmd = [sys.executable, "-m", "jnet.distributed", "--processes", "2", "--timeout", "100"]
    proc = subprocess.run(
        cmd + [str(script)], env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "process 1 exited with 3; ending the others" in proc.stderr
    assert time.monotonic() - start < 60


@pytest.mark.slow
def test_launcher_stopped_by_sigterm_ends_its_processes(tmp_path):
    """`kill` / `scancel` on the launcher must not leave its processes running."""
    script = tmp_path / "sleeps.py"
    script.write_text(
        "import os, pathlib, time, jax\n"
        "pid_file = pathlib.Path(os.environ['PID_DIR'], str(jax.process_index()))\n"
        "pid_file.write_text(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    env = worker_env(tmp_path, "") | {"PID_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "jnet.distributed", "--processes", "2", str(script)]
    launcher = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    pid_files = [tmp_path / "0", tmp_path / "1"]
    deadline = time.monotonic() + TIMEOUT_S
    while not all(f.exists() and f.read_text() for f in pid_files):
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.stderr.read()
        time.sleep(0.2)
    pids = [int(f.read_text()) for f in pid_files]
    launcher.terminate()
    assert launcher.wait(timeout=60) == 128 + signal.SIGTERM
    for pid in pids:
        with pytest.raises(ProcessLookupError):  # gone, and reaped by the launcher
            os.kill(pid, 0)


def test_local_devices_must_be_positive(capsys):
    from jnet import distributed

    with pytest.raises(SystemExit) as e:
        distributed.parse_args(["--processes", "2", "--local-devices", "0", "x.py"])
    assert e.value.code == 2
    assert "argument --local-devices: must be a positive integer" in capsys.readouterr().err


@pytest.mark.slow
def test_no_cluster_and_no_processes_says_to_pass_processes(tmp_path):
    """Outside SLURM / Open MPI / a TPU pod, a launch without --processes says what to pass."""
    script = tmp_path / "never_runs.py"
    script.write_text("raise SystemExit('the script ran')\n")
    cluster = ("SLURM_", "OMPI_", "JAX_COORDINATOR", "KUBERNETES_SERVICE_HOST")
    env = {k: v for k, v in worker_env(tmp_path, "").items() if not k.startswith(cluster)}
    cmd = [sys.executable, "-m", "jnet.distributed", str(script)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no cluster found" in proc.stderr and "pass --processes N" in proc.stderr
    assert "Traceback" not in proc.stderr and "the script ran" not in proc.stderr
