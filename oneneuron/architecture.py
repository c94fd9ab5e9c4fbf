"""What a trained model computes, as the training record and the manifest store it (oneneuron/schema.py).

`Architecture`: the article's one linear unit, or an MLP (`python -m train.all --model mlp:16,16
--activation relu`, train/mlp.py). `Fitted`: an MLP's predictions kept for the report. Both parse
from `oneneuron.schema.Fields`, so a bad value is one `SchemaError` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oneneuron.schema import Fields

ACTIVATIONS = ("relu", "tanh")
MAX_HIDDEN_LAYERS = 8
MAX_HIDDEN_UNITS = 4096


@dataclass(frozen=True)
class Architecture:
    """What a trained model computes: the article's one linear unit (`hidden` empty), or an MLP with
    `hidden` units per layer, `activation` after each hidden layer and one linear output unit."""

    hidden: tuple[int, ...] = ()
    activation: str | None = None

    @property
    def is_linear(self) -> bool:
        return not self.hidden

    def parameters(self, n_features: int) -> int:
        """Weights and biases of every layer, for `n_features` inputs and one output."""
        sizes = (n_features, *self.hidden, 1)
        return sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False))

    def describe(self) -> str:
        """`linear`, or `mlp:16,16 relu` (the --model / --activation flags that build it)."""
        if self.is_linear:
            return "linear"
        return f"mlp:{','.join(str(h) for h in self.hidden)} {self.activation}"

    @classmethod
    def parse(cls, f: Fields) -> Architecture:
        kind = f.str("kind")
        if kind == "linear":
            return cls()
        if kind != "mlp":
            f.fail(f"{kind[:40]!r} is not 'linear' or 'mlp'", "kind")
        hidden = f.list("hidden") or []
        if not 1 <= len(hidden) <= MAX_HIDDEN_LAYERS or not all(
            type(h) is int and 1 <= h <= MAX_HIDDEN_UNITS for h in hidden
        ):
            f.fail(
                f"expected 1 to {MAX_HIDDEN_LAYERS} layer sizes in [1, {MAX_HIDDEN_UNITS}], "
                f"got {repr(hidden)[:60]}",
                "hidden",
            )
        activation = f.str("activation")
        if activation not in ACTIVATIONS:
            f.fail(f"{activation[:40]!r} is not one of {', '.join(ACTIVATIONS)}", "activation")
        return cls(tuple(hidden), activation)

    def to_json(self) -> dict[str, Any]:
        if self.is_linear:
            return {"kind": "linear"}
        return {"kind": "mlp", "hidden": list(self.hidden), "activation": self.activation}


LINEAR = Architecture()


@dataclass(frozen=True)
class Fitted:
    """A nonlinear model's predictions for the report: on a grid over the data (one feature) or on
    the first data rows (several features)."""

    x: tuple[tuple[float, ...], ...]
    y: tuple[float, ...]

    @classmethod
    def parse(cls, f: Fields, n_features: int) -> Fitted:
        fitted = cls(f.rows("x"), f.nums("y"))
        if any(len(row) != n_features for row in fitted.x) or len(fitted.y) != len(fitted.x):
            f.fail(f"expected rows of {n_features} number(s) and one y per row", "x")
        return fitted

    def to_json(self) -> dict[str, Any]:
        return {"x": [list(r) for r in self.x], "y": list(self.y)}
