"""benchmarks/lstm.py at toy sizes: every cell's rows, trained alike (no timing checks)."""

import pytest


@pytest.mark.slow
def test_gru_and_rnn_rows_train_the_same_network_as_jax_grad(capsys):
    import lstm

    argv = ["--cells", "gru", "rnn", "--steps", "2", "--repeats", "1", "--batch-size", "4",
            "--hidden", "6", "--no-torch"]  # fmt: skip
    rows = lstm.main(argv)
    out = capsys.readouterr().out
    got = [(r["cell"], r["impl"]) for r in rows]
    # The GRU sums its weight gradients in the reverse scan on a CPU, the RNN after it.
    other = {"gru": "jnet-dw-after", "rnn": "jnet-dw-in-scan"}
    want = [(c, i) for c in ("gru", "rnn") for i in ("jnet", "jnet-hoisted", other[c], "ref-naive")]
    assert got == want
    for r in rows:
        assert r["param_diff"] < 1e-5 and r["ms_per_step"] > 0
    assert "GRU 6, row-by-row MNIST" in out and "RNN 6" in out and "vs ref-naive" in out


def test_cells_are_a_choice():
    import lstm

    assert lstm.parse_args([]).cells == ["lstm"]
    assert lstm.parse_args(["--cells", "rnn", "gru"]).cells == ["rnn", "gru"]
    with pytest.raises(SystemExit):
        lstm.parse_args(["--cells", "transformer"])
