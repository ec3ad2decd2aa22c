"""jnet.save / jnet.load: a model as one file, bit-exact, checksummed, atomic, any device count."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _train_support import assert_trees_equal

import jnet
from jnet.checkpoint import CorruptError


@pytest.fixture
def model():
    net = jnet.serial(jnet.dense(5), jnet.batch_norm(), jnet.relu(), jnet.dense(3))
    _, params, state = jnet.init_with_state(net, jax.random.key(0), (1, 4))
    params = list(params)
    params[3] = {"w": params[3]["w"].astype(jnp.bfloat16), "b": params[3]["b"]}  # any dtype
    return tuple(params), state


def test_save_and_load_round_trip_bit_exact(model, tmp_path):
    params, state = model
    path = jnet.save(tmp_path / "model.jnet", params, state, metadata={"epochs": 3, "note": "x"})
    loaded, loaded_state, metadata = jnet.load(path)
    assert_trees_equal(loaded, params) and assert_trees_equal(loaded_state, state)
    assert isinstance(loaded, tuple) and metadata == {"epochs": 3, "note": "x"}
    assert loaded[3]["w"].dtype == jnp.bfloat16
    assert [p.name for p in tmp_path.iterdir()] == ["model.jnet"]  # no temporary file left
    # A stateless model: model_state defaults to ().
    jnet.save(tmp_path / "plain", params)
    assert jnet.load(tmp_path / "plain")[1] == ()


@pytest.mark.parametrize("where", [0.02, 0.3, 0.6, 0.999])
def test_a_flipped_byte_anywhere_is_refused_naming_the_file(model, tmp_path, where):
    path = jnet.save(tmp_path / "model.jnet", *model)
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * where)] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptError, match=str(path)):
        jnet.load(path)


def test_truncated_edited_or_foreign_files_are_refused(model, tmp_path):
    path = jnet.save(tmp_path / "model.jnet", *model)
    raw = path.read_bytes()
    (tmp_path / "short").write_bytes(raw[:-4])
    (tmp_path / "other").write_bytes(b"PK\x03\x04 not a model")
    for name in ("short", "other"):
        with pytest.raises(CorruptError, match=name):
            jnet.load(tmp_path / name)
    jnet.save(tmp_path / "meta", *model, metadata={"epochs": 3})
    edited = (tmp_path / "meta").read_bytes().replace(b'"epochs": 3', b'"epochs": 4')
    (tmp_path / "meta").write_bytes(edited)
    with pytest.raises(CorruptError, match="header that does not match its digest"):
        jnet.load(tmp_path / "meta")


def test_a_failed_write_leaves_the_previous_file(model, tmp_path, monkeypatch):
    path = jnet.save(tmp_path / "model.jnet", *model, metadata={"version": 1})

    def crash(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="No space"):
        jnet.save(path, *model, metadata={"version": 2})
    assert jnet.load(path)[2] == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["model.jnet"]


def test_what_is_not_a_model_is_refused_by_name(tmp_path):
    with pytest.raises(TypeError, match=r"params\[0\]\['w'\] is a str"):
        jnet.save(tmp_path / "m", ({"w": "weights"},))
    with pytest.raises(TypeError, match="metadata must be JSON"):
        jnet.save(tmp_path / "m", ({"w": jnp.ones(2)},), metadata={"f": object()})


SAVE_ON_FOUR_DEVICES = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np, jnet
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    assert len(jax.devices()) == 4
    mesh = Mesh(np.array(jax.devices()), ("data",))
    w = jax.device_put(jnp.arange(32.0).reshape(8, 4), NamedSharding(mesh, P("data")))
    b = jax.device_put(jnp.ones(4), NamedSharding(mesh, P()))
    jnet.save(sys.argv[1], ({"w": w, "b": b},), metadata={"devices": 4})
    """
)


@pytest.mark.slow
def test_a_model_saved_on_four_devices_loads_on_one(tmp_path):
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=4",
                        "JAX_PLATFORMS": "cpu"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", SAVE_ON_FOUR_DEVICES, str(tmp_path / "m")],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (params,), state, metadata = jnet.load(tmp_path / "m")
    assert metadata == {"devices": 4} and state == ()
    np.testing.assert_array_equal(params["w"], np.arange(32.0).reshape(8, 4))
    assert params["w"].sharding.num_devices == 1
