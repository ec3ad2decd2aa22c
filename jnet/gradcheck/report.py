"""Reports: what was compared, how far apart, which tolerances, printed as tables.

`VJPReport` is what `check_vjp` and `check_jvp` return (one row per input leaf and output
leaf, per order and mode); `GradientReport` is what `check_gradients` returns: the whole
network's rows (one per parameter leaf and `x`, output `loss`) and one per layer leaf checked
on its own. Every row is a `VJPRow`, computed by one engine (`compare.py`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from jnet.gradcheck.tolerances import Tolerances


class GradientCheckError(ValueError):
    """A hand-written gradient disagrees with jax.grad or finite differences."""


class NothingToCheck(ValueError):
    """No floating-point argument or output: there is no derivative to check."""


class NonFiniteInput(ValueError):
    """A checked input holds NaN or inf: no derivative there can be judged right."""


class VJPRow(NamedTuple):
    """One (input leaf, output leaf) pair of one checked function or layer."""

    case: str  # the function's name, or a layer's address such as `2:dense(8)`
    input: str  # e.g. `w`, `x`, `arg0.kernel`
    output: str  # e.g. `y`, `out.1`; for order 2, the gradient leaf differentiated
    order: int  # 1: the VJP; 2: Hessian-vector products through it
    abs_err: float | None  # max |vjp - reference vjp| over the probes (None: no reference)
    rel_err: float | None  # abs_err / max |reference vjp| (tolerances.error_scale's floor)
    fd_err: float | None  # worst |<vjp, u> - finite difference| / scale over the probes
    kinks: int  # probes whose difference crossed a kink (left out of fd_err)
    passed: bool
    mode: str = "vjp"  # "vjp": reverse mode; "jvp": forward mode (check_jvp)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def _finite(x: float | None) -> float | None:
    return None if x is None else (x if math.isfinite(x) else str(x))


def vjp_table(rows: list[VJPRow]) -> str:
    """Verdict first; each text column as wide as its longest entry, so a long case name
    never pushes the numbers out of line. A mode column only when forward mode is in it."""
    modes = any(r.mode != "vjp" for r in rows)
    widths = [
        max([len(title), *(len(getattr(r, field)) for r in rows)])
        for title, field in (("case", "case"), ("input", "input"), ("output", "output"))
    ]
    wc, wi, wo = widths
    mode_head = f" {'mode':<4}" if modes else ""
    head = (
        f"{'verdict':<7} {'case':<{wc}} {'input':<{wi}} {'output':<{wo}}{mode_head} {'ord':>3} "
        f"{'abs err':>9} {'rel err':>9} {'fd err':>9} {'kinks':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        mode = f" {r.mode:<4}" if modes else ""
        lines.append(
            f"{'ok' if r.passed else 'FAIL':<7} {r.case:<{wc}} {r.input:<{wi}} "
            f"{r.output:<{wo}}{mode} {r.order:>3} {_num(r.abs_err):>9} {_num(r.rel_err):>9} "
            f"{_num(r.fd_err):>9} {r.kinks:>5}"
        )
    return "\n".join(lines)


class VJPReport(NamedTuple):
    """The result of `check_vjp` (and of `check_jvp`, whose `title` it is then).

    Attributes:
      name: the checked function's name.
      rows: one `VJPRow` per (input leaf, output leaf, order, mode).
      notes: what was skipped (integer arguments or outputs), kinks, failures explained.
      tolerances: the `Tolerances` used.
      probes: random cotangent/direction pairs per row.
      precision: the dtype(s) the finite differences were evaluated in.
      title: `check_vjp` or `check_jvp`, the header of `str(report)`.
    """

    name: str
    rows: list[VJPRow]
    notes: list[str]
    tolerances: Tolerances
    probes: int
    precision: str = ""
    title: str = "check_vjp"

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def failing(self) -> list[VJPRow]:
        return [r for r in self.rows if not r.passed]

    @property
    def failing_inputs(self) -> list[str]:
        return list(dict.fromkeys(r.input for r in self.failing))

    @property
    def failing_outputs(self) -> list[str]:
        return list(dict.fromkeys(r.output for r in self.failing))

    def table(self) -> str:
        return vjp_table(self.rows)

    def __str__(self) -> str:
        verdict = "ok" if self.ok else f"FAILED: {len(self.failing)} of {len(self.rows)} rows"
        lines = [f"{self.title}({self.name}): {verdict}", self.table(), self.tolerances.describe()]
        lines.append(f"probes: {self.probes} random cotangent/direction pairs per row")
        if self.precision:
            lines.append(f"finite differences evaluated in {self.precision}")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: plain floats, ints, strings and lists (inf and NaN as strings)."""
        return {
            "name": self.name,
            "ok": self.ok,
            "probes": self.probes,
            "precision": self.precision,
            "tolerances": self.tolerances._asdict(),
            "rows": [_row_dict(r) for r in self.rows],
            "notes": list(self.notes),
        }


def _row_dict(r: NamedTuple) -> dict[str, Any]:
    return {k: _finite(v) if isinstance(v, float) else v for k, v in r._asdict().items()}


class GradientReport(NamedTuple):
    """The result of `check_gradients`.

    Attributes:
      rows: the whole network: one `VJPRow` per parameter leaf, then `x` (output `loss`):
        the hand-written gradient of the loss against `jax.grad` of the pure forward.
      layers: each layer (and the loss) checked on its own, on the activations that flow
        into it: its hand-written backward against `jax.vjp` of its forward, and finite
        differences. `failing_layers` reads these.
      extra: whole-network Hessian-vector products (`order=2`) and per-example gradients
        under `jax.vmap`.
      notes: what the checks could not see or skipped.
      tolerances: the `Tolerances` used for `layers` and `extra`.
    """

    rows: list[VJPRow]
    layers: list[VJPRow] = []
    extra: list[VJPRow] = []
    notes: list[str] = []
    tolerances: Tolerances | None = None

    @property
    def ok(self) -> bool:
        return all(r.passed for r in [*self.rows, *self.layers, *self.extra])

    @property
    def failing_layers(self) -> list[str]:
        """Addresses (`2:dense(8)`, `1/0:tanh()`, `loss`) whose own check failed, in order."""
        return list(dict.fromkeys(f"{r.case}" for r in self.layers if not r.passed))

    def table(self) -> str:
        """The whole network's table: one line per parameter leaf and `x`."""
        return vjp_table(self.rows)

    def __str__(self) -> str:
        parts = [self.table()]
        if self.layers:
            parts += ["", "each layer on its own (hand-written backward vs jax.vjp, and FD):"]
            parts.append(vjp_table(self.layers))
        if self.extra:
            parts += ["", "second order and per-example (jax.vmap) gradients:"]
            parts.append(vjp_table(self.extra))
        if self.tolerances is not None:
            parts.append(self.tolerances.describe())
        if self.failing_layers:
            parts.append("failing layers: " + ", ".join(self.failing_layers))
        return "\n".join(parts + [f"note: {n}" for n in self.notes])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: plain floats, ints, strings and lists (inf and NaN as strings)."""
        return {
            "ok": self.ok,
            "failing_layers": self.failing_layers,
            "rows": [_row_dict(r) for r in self.rows],
            "layers": [_row_dict(r) for r in self.layers],
            "extra": [_row_dict(r) for r in self.extra],
            "notes": list(self.notes),
            "tolerances": None if self.tolerances is None else self.tolerances._asdict(),
        }
