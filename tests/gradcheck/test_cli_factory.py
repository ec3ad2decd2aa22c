"""`python -m jnet.gradcheck MODULE:FACTORY --input-shape ...`: exit 0 when every check
holds, 1 otherwise, naming the failing layer."""

import os
import pathlib
import subprocess
import sys

import pytest

from jnet.gradcheck.__main__ import main

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]


def run(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(HERE)]))
    return subprocess.run(
        [sys.executable, "-m", "jnet.gradcheck", *args],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_good_and_bad_user_factories():
    good = run("planted_layers:good_net", "--input-shape", "4,3")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "0 failed (float64)" in good.stdout
    bad = run("planted_layers:bad_net", "--input-shape", "4,3", "--loss", "mean_squared_error")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "failing layers: 2:scale" in bad.stdout


def test_usage_errors(capsys):
    for argv, message in [
        (["planted_layers:good_net"], "needs --input-shape"),
        (["nosuchmodule_xyz:f", "--input-shape", "4,3"], "cannot import 'nosuchmodule_xyz'"),
        (["planted_layers:nothing", "--input-shape", "4,3"], "has no attribute 'nothing'"),
        (["planted_layers:good_net", "dense", "--input-shape", "4,3"], "not both"),
        (["planted_layers:good_net", "--input-shape", "4,x"], "expected integers like 8,16"),
        (["planted_layers:lookup_net", "--input-shape", "4,8", "--input-dtype", "int32"],
         "needs --input-range LOW,HIGH"),
        (["planted_layers:good_net", "--input-shape", "4,3", "--input-range", "0,5"],
         "--input-range is for integer input"),
        (["planted_layers:lookup_net", "--input-shape", "4,8", "--input-dtype", "int32",
          "--input-range", "5,2"], "need 0 <= LOW < HIGH"),
    ]:
        sys.path.insert(0, str(HERE))
        try:
            with pytest.raises(SystemExit) as e:
                main(argv)
        finally:
            sys.path.remove(str(HERE))
        assert e.value.code == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_registry_cases_still_run_by_name(capsys):
    assert main(["dense", "relu", "--probes", "1"]) == 0
    out = capsys.readouterr().out
    assert "0:dense(5)" not in out and "dense" in out  # registry cases are checked whole
    assert "passed, 0 failed (float64)" in out


@pytest.mark.slow
def test_integer_inputs_from_the_command_line():
    # Ids in [0, 5) on 32 positions: repeated tokens, where writing instead of adding fails.
    flags = ["--input-shape", "4,8", "--input-dtype", "int32", "--input-range", "0,5"]
    good = run("planted_layers:lookup_net", *flags)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "x: int32, skipped" in good.stdout
    bad = run("planted_layers:bad_lookup_net", *flags)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "failing layers: 0:lookup" in bad.stdout
    # A jnet.embedding says which ids it takes: no flags needed.
    emb = run("planted_layers:embedding_net", "--input-shape", "4,8")
    assert emb.returncode == 0, emb.stdout + emb.stderr
    assert "0:embedding(50, 4)" in emb.stdout and "0 failed (float64)" in emb.stdout
