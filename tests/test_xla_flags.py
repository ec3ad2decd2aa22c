"""jnet.xla_flags: reading and setting XLA:CPU's YNNPACK convolution switch, and its effect."""

import json
import subprocess
import sys

import jax
import pytest

from jnet import xla_flags
from jnet.layers import conv

OFF = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


@pytest.mark.parametrize(
    "flags, off",
    [
        ("", False),
        ("--xla_force_host_platform_device_count=8", False),
        (OFF, True),
        ("--xla_cpu_experimental_ynn_fusion_type=+reduce", False),
        ("--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce", True),  # a plain list
        ("--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution", False),
        ("--xla_cpu_experimental_ynn_fusion_type=", True),  # YNNPACK off altogether
        (f"{OFF} --xla_cpu_experimental_ynn_fusion_type=+individual_convolution", False),  # last
    ],
)
def test_reads_whether_convolutions_leave_ynnpack(flags, off):
    assert xla_flags.ynn_convolutions_off(flags) is off


@pytest.mark.parametrize(
    "flags, off",
    [
        ("", False),
        (OFF, False),  # convolutions only
        (xla_flags.EIGEN_KERNELS, True),
        ("--xla_cpu_experimental_ynn_fusion_type=individual_convolution", True),  # a plain list
        ("--xla_cpu_experimental_ynn_fusion_type=individual_dot", False),
    ],
)
def test_reads_whether_matrix_products_leave_ynnpack(flags, off):
    assert xla_flags.ynn_dots_off(flags) is off


def test_adds_the_flag_only_before_jax_starts_and_never_over_the_users(monkeypatch):
    monkeypatch.setattr(xla_flags, "_jaxlib_tested", lambda: True)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert not xla_flags.prefer_eigen_kernels()  # this process's backends are running
    assert "ynn" not in xla_flags.os.environ["XLA_FLAGS"]
    monkeypatch.setattr(xla_flags, "_backends_started", lambda: False)
    assert xla_flags.prefer_eigen_kernels()
    assert xla_flags.os.environ["XLA_FLAGS"] == (
        f"--xla_force_host_platform_device_count=2 {xla_flags.EIGEN_KERNELS}"
    )
    mine = "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
    monkeypatch.setenv("XLA_FLAGS", mine)
    assert not xla_flags.prefer_eigen_kernels()  # the user's own setting stays
    assert xla_flags.os.environ["XLA_FLAGS"] == mine
    monkeypatch.setattr(xla_flags, "_jaxlib_tested", lambda: False)
    monkeypatch.delenv("XLA_FLAGS")
    assert not xla_flags.prefer_eigen_kernels()  # an untested jaxlib: nothing added
    assert "XLA_FLAGS" not in xla_flags.os.environ


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU's choice")
def test_the_cpu_default_lowering_follows_the_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", OFF)
    assert conv.lowering_for(None) == "xla"
    monkeypatch.setenv("XLA_FLAGS", "")
    assert conv.lowering_for(None) == "matmul"
    assert conv.lowering_for("xla") == "xla"


FRESH = """
import json, jax, jax.numpy as jnp
from jnet import xla_flags
from jnet.layers import conv
on = xla_flags.prefer_eigen_kernels()
x, w = jnp.ones((8, 14, 14, 32)), jnp.ones((3, 3, 32, 32))
f = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC")))
hlo = f.lower(x, w).compile().as_text()
h, u = jnp.ones((128, 128)), jnp.ones((128, 512))
dot = jax.jit(lambda h, u: h @ u).lower(h, u).compile().as_text()
print(json.dumps([on, "__ynn_fusion" in hlo, conv.lowering_for(None), "__ynn_fusion" in dot]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not xla_flags._jaxlib_tested(), reason="jaxlib outside the tested releases")
def test_a_fresh_process_gets_eigen_convolutions_and_the_xla_lowering():
    env = {k: v for k, v in __import__("os").environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    run = lambda code: json.loads(  # noqa: E731
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=True).stdout.splitlines()[-1]
    )  # fmt: skip
    assert run(FRESH) == [True, False, "xla", False]
    # Without the call XLA gives the convolution and the product to YNNPACK, and conv2d
    # picks "matmul".
    assert run(FRESH.replace("xla_flags.prefer_eigen_kernels()", "False")) == [
        False, True, "matmul", True
    ]  # fmt: skip
