"""experiments/mnist_cnn.py and cat_cnn.py: --quick runs write metrics.json, PNGs, the table.

Quick runs are tiny (512 MNIST images, a quarter of the channels, one epoch), but each
compiles several networks: slow on a shared CPU, so marked slow. The plain quick runs are
read from the users' command run in a fresh process (tests/_scripts_support.py). The flag
checks are fast.
"""

import _scripts_support as scripts
import pytest
from plots import is_png
from test_experiments import check_outputs, load_script, run_quick


@pytest.mark.slow
def test_mnist_cnn_quick(tmp_path_factory, data_dir):
    done = scripts.run("experiments/mnist_cnn.py", tmp_path_factory, data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    check_outputs(None, out, done.out)
    saved = done.metrics()
    assert set(saved["runs"]) == {"plain", "bn", "speed"}
    assert {"curves_plain.png", "curves_bn.png", "speed.png"} <= set(saved["files"])
    # The speed run's curve: steps every --eval-every, training seconds growing, accuracies.
    curve = saved["runs"]["speed"][0]["curve"]
    assert [c[0] for c in curve] == list(range(1, len(curve) + 1))
    assert all(b[1] > a[1] > 0 for a, b in zip(curve, curve[1:], strict=False))
    assert all(0 <= c[2] <= 1 for c in curve)
    assert "99.3%" in out and "99.5%" in out and "0.76" in out  # the goals and the anchor


@pytest.mark.slow
def test_mnist_cnn_speed_stops_at_the_target(tmp_path, capsys, data_dir):
    """A target of 0 is met at the first evaluation: the run stops there, time recorded."""
    argv = ("--parts", "speed", "--target", "0", "--num-seeds", "2")
    metrics, out = run_quick("mnist_cnn", tmp_path, capsys, *argv, data_dir=data_dir)
    runs = metrics["runs"]["speed"]
    assert [r["steps"] for r in runs] == [1, 1] and all(r["seconds"] > 0 for r in runs)
    assert "0.0% after 1 steps" in out
    assert is_png(tmp_path / "speed.png")


@pytest.mark.slow
def test_cat_cnn_quick(tmp_path_factory, data_dir):
    if not (data_dir / "catvnoncat").is_dir():
        pytest.skip("cat data not found")
    done = scripts.run("experiments/cat_cnn.py", tmp_path_factory, data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    out, metrics = done.stdout, done.metrics()
    check_outputs(None, out, done.out)
    assert {"curves.png", "misclassified.png", "predictions.png"} == set(metrics["files"])
    assert "80.0%" in out  # the course's 4-layer MLP beside ours
    (run,) = metrics["runs"]["cnn"]
    assert 0 <= run["test"] <= 1 and len(run["history"]["epoch"]) == 2


def test_parts_and_defaults(tmp_path):
    script = load_script("mnist_cnn")
    args = script.parse_args(["--parts", "speed", "--out", str(tmp_path)])
    assert args.parts == ["speed"] and script.config(args, "speed")["seeds"] == 5
    args = script.parse_args(["--out", str(tmp_path)])
    assert args.parts == ["plain", "bn", "speed"]
    assert [script.config(args, p)["seeds"] for p in ("plain", "bn")] == [3, 3]
    assert script.config(script.parse_args(["--epochs", "3"]), "bn")["epochs"] == 3
    with pytest.raises(SystemExit):
        script.parse_args(["--parts", "resnet"])


@pytest.mark.slow
def test_networks_build_and_name_their_layers():
    import jax

    from jnet.layers import init_with_state

    mnist, cat = load_script("mnist_cnn"), load_script("cat_cnn")
    for part, stateful in (("plain", False), ("bn", True), ("speed", True)):
        net = mnist.network(part)
        assert net.stateful == stateful
        assert "conv2d(32, 3)" in [c.name for c in net.children]
    cfg = cat.config(cat.parse_args([]))
    net = cat.network(cfg)
    assert net.stateful and net.children[-1].name == "dense(1)"
    shape, _, _ = init_with_state(net, jax.random.key(0), (2, 64, 64, 3))
    assert tuple(shape) == (2, 1)
