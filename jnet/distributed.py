"""Run a script as several processes of one JAX run: locally, or one per node of a cluster.

    python -m jnet.distributed --processes 2 --local-devices 2 SCRIPT [ARGS...]
        starts 2 processes on this machine, joined through a coordinator on 127.0.0.1
        (a free port), each with 2 CPU devices, and runs SCRIPT in each.
    srun python -m jnet.distributed SCRIPT [ARGS...]          (SLURM, one task per GPU or host)
    python -m jnet.distributed SCRIPT [ARGS...]               (on every TPU VM of a pod)
        one process of a cluster job: `jax.distributed.initialize` finds the cluster.

Each process calls `jnet.parallel.initialize` before SCRIPT runs (as `__main__`), so a
script written for one process, e.g. `fit(..., mesh=jnet.parallel.data_mesh())`, runs
unchanged over all the processes' devices. The launcher waits for every process; when one
fails or `--timeout` passes, it ends the others, so a run never hangs on a dead peer.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import runpy
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence

from jnet.arguments import positive_int_flag as positive_int


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m jnet.distributed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # the script's own flags follow it
    )
    p.add_argument("--processes", type=positive_int, help="start this many local processes")
    p.add_argument("--local-devices", type=positive_int, help="CPU devices per process (CPU only)")
    p.add_argument("--timeout", type=float, help="seconds before the launcher ends the run")
    p.add_argument(
        "--log-dir",
        type=pathlib.Path,
        help="write the output of processes 1.. to LOG_DIR/process<i>.log "
        "(default: every process prints here)",
    )
    # One process of a run (what the launcher starts; unset under SLURM / on TPU pods).
    p.add_argument("--coordinator", help="host:port of process 0's coordinator")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)
    p.add_argument("script", type=pathlib.Path)
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")
    return p.parse_args(argv)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: argparse.Namespace) -> int:
    """Starts `args.processes` local processes; returns 0, a failed one's code, or 124."""
    coordinator = f"127.0.0.1:{free_port()}"
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    # SIGTERM (kill, scancel, a CI timeout) would end the launcher without its `finally`,
    # orphaning the processes; as an exception it ends them like a failure does.
    previous = signal.signal(signal.SIGTERM, _raise_exit)
    try:
        for i in range(args.processes):
            cmd = [sys.executable, "-m", "jnet.distributed", "--coordinator", coordinator]
            cmd += ["--num-processes", str(args.processes), "--process-id", str(i)]
            if args.local_devices:
                cmd += ["--local-devices", str(args.local_devices)]
            cmd += [str(args.script), *args.args]
            out = None
            if args.log_dir and i > 0:
                out = open(args.log_dir / f"process{i}.log", "w")  # noqa: SIM115 (closed below)
            procs.append(
                subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None)
            )
            if out:
                out.close()  # the child holds its own handle
        return _wait(procs, args.timeout)
    finally:
        _end(procs)
        signal.signal(signal.SIGTERM, previous)


def _raise_exit(signum: int, frame) -> None:
    raise SystemExit(128 + signum)


def _wait(procs: list[subprocess.Popen], timeout: float | None) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in procs]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:  # its peers would wait on it in their next collective
            i, code = failed[0]
            message = f"jnet.distributed: process {i} exited with {code}; ending the others"
            print(message, file=sys.stderr)
            return code
        if all(c == 0 for c in codes):
            return 0
        if deadline is not None and time.monotonic() > deadline:
            print(f"jnet.distributed: still running after {timeout} s; ending all", file=sys.stderr)
            return 124
        time.sleep(0.1)


def _end(procs: list[subprocess.Popen], grace: float = 2.0) -> None:
    """Ends the processes still running: SIGTERM, then SIGKILL after `grace` seconds.

    JAX catches SIGTERM (to sync preemption), so a JAX process usually needs the kill.
    """
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.terminate()
    end = time.monotonic() + grace
    for p in running:
        try:
            p.wait(timeout=max(end - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_one(args: argparse.Namespace) -> None:
    """Joins the run as one process, then runs the script as `__main__`."""
    from jnet import parallel

    try:
        parallel.initialize(
            args.coordinator,
            args.num_processes,
            args.process_id,
            local_device_count=args.local_devices,
        )
    except ValueError as e:
        # No --coordinator and no cluster that JAX detects (SLURM, Open MPI, a TPU pod):
        # JAX itself only says "coordinator_address should be defined".
        if args.coordinator is not None or "coordinator_address" not in str(e):
            raise
        print(
            "python -m jnet.distributed: error: no cluster found (SLURM, Open MPI, a TPU pod, "
            "Kubernetes) and no --processes given: pass --processes N to start N processes "
            "on this machine, or run under srun / on every VM of a TPU pod",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    script = args.script.resolve()
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.parent))  # as `python SCRIPT` would
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            if not isinstance(e.code, int):
                print(e.code, file=sys.stderr)
            _exit_now(e.code if isinstance(e.code, int) else 1)
        raise
    except BaseException:
        traceback.print_exc()
        _exit_now(1)


def _exit_now(code: int) -> None:
    """Exits at once, skipping JAX's shutdown barrier.

    A normal exit would wait there for the other processes, which may in turn be waiting
    on this one in a collective: the launcher could not tell that this one failed.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.processes is not None and args.process_id is None:
        return launch(args)
    run_one(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
