"""Probe inputs for a brought-in model (export.all --from-keras/--from-torch): made, read and stored.

The probe is what every artifact of the model is checked against (serve.check): inputs generated
from the signature with a seed, or the user's own (`--probe-inputs inputs.npz`), and the source
framework's outputs on them. Generated inputs, per dtype:

- floats: `rows` rows from N(0, 1), then `LARGE_ROWS` rows from N(0, 1)·1000 (·100 for float16,
  whose largest value is 65504), where accumulation order shows;
- integers: uniform in `--int-range LO:HI` (HI exclusive), default 0:10, so ids fed to an
  Embedding stay inside any vocabulary of at least 10 rows; pass the range your ids really have;
- bools: both values, alternating (and shuffled by the seed);
- a dynamic dimension other than the batch takes `DYNAMIC_SIZE`, or the size `--dim NAME=SIZE` gives
  it (export.all --from-onnx).

Stored as one content-addressed file `<model>.<sha12>.probe.npz` (zip of `inputs/<name>.npy` and
`outputs/<name>.npy`, written byte-for-byte reproducibly) named by every entry of the model.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oneneuron.contract import CONTRACT
from oneneuron.errors import InputError, IntegrityError
from oneneuron.schema import Signature, TensorSpec

ROWS = 32  # generated rows from N(0, 1)
LARGE_ROWS = 4  # and rows from N(0, 1)·LARGE (·LARGE_FLOAT16 for float16 inputs)
LARGE, LARGE_FLOAT16 = 1000.0, 100.0
INT_RANGE = (0, 10)  # default --int-range: [0, 10)
DYNAMIC_SIZE = 4  # size given to dynamic dimensions other than the batch
# a --probe-inputs file (and a stored probe) larger than this is refused (the shared contract's bound)
MAX_PROBE_BYTES = CONTRACT.selftest["max_probe_bytes"]
MAX_ROWS = 100_000
MAX_UNPACKED = CONTRACT.selftest["max_probe_unpacked"]  # uncompressed arrays (a zip bomb is refused unread)
MAX_MEMBERS = CONTRACT.selftest["max_probe_members"]
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same probe has the same bytes, hence the same name


@dataclass(frozen=True)
class Probe:
    """Named probe inputs and the source model's outputs on them (each with the same rows)."""

    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]

    @property
    def rows(self) -> int:
        return len(next(iter(self.inputs.values())))

    def head(self, rows: int) -> Probe:
        return Probe(
            {k: v[:rows] for k, v in self.inputs.items()}, {k: v[:rows] for k, v in self.outputs.items()}
        )


def parse_int_range(text: str) -> tuple[int, int]:
    """`--int-range LO:HI` (HI exclusive) -> (LO, HI)."""
    lo, sep, hi = text.partition(":")
    try:
        bounds = (int(lo), int(hi)) if sep else None
    except ValueError:
        bounds = None
    if bounds is None or bounds[0] >= bounds[1]:
        raise InputError(
            f"--int-range {text[:40]!r}: expected LO:HI with integers LO < HI (HI exclusive), e.g. 0:10"
        )
    return bounds


def _dims(spec: TensorSpec, rows: int, sizes: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(
        rows if i == 0 else d if isinstance(d, int) else sizes.get(d, DYNAMIC_SIZE)
        for i, d in enumerate(spec.shape)
    )


def generate(
    signature: Signature,
    seed: int,
    int_range: tuple[int, int] = INT_RANGE,
    sizes: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Probe inputs for every input of `signature` (see the module docstring for the distribution);
    a named dynamic dimension takes its size from `sizes` (export.all --dim NAME=SIZE), else
    DYNAMIC_SIZE."""
    rng = np.random.default_rng(seed)
    rows = ROWS + LARGE_ROWS
    out = {}
    for spec in signature.inputs:
        shape = _dims(spec, rows, sizes or {})
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            values = rng.standard_normal(shape)
            values[ROWS:] *= LARGE_FLOAT16 if dtype == np.float16 else LARGE
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            lo, hi = max(int_range[0], info.min), min(int_range[1], int(info.max) + 1)
            if lo >= hi:
                raise InputError(
                    f"--int-range {int_range[0]}:{int_range[1]} holds no {dtype} value for input "
                    f"{spec.name!r}; give a range inside [{info.min}, {info.max}]"
                )
            values = rng.integers(lo, hi, size=shape)
        else:  # bool: both values in every position, in a seeded order
            values = (np.arange(int(np.prod(shape))).reshape(shape) % 2).astype(bool)
            values = rng.permutation(values, axis=0)
        out[spec.name] = np.ascontiguousarray(values, dtype=dtype)
    return out


def read_inputs(path: Path, signature: Signature, max_bytes: int = MAX_PROBE_BYTES) -> dict[str, np.ndarray]:
    """`--probe-inputs inputs.npz`: one array per input name, checked against the signature; a file
    (and its arrays uncompressed) of at most `max_bytes` (export.optimize's --data takes more)."""
    path = Path(path)
    fix = "pass an .npz with one array per input name (numpy.savez), e.g. " + ", ".join(
        f"{s.name}={s.dtype}[{', '.join(map(str, s.shape))}]" for s in signature.inputs
    )
    if not path.is_file():
        raise InputError(f"{path}: no such file; {fix}")
    if path.stat().st_size > max_bytes:
        raise InputError(f"{path}: more than {max_bytes >> 20} MiB; {fix} with fewer rows")
    try:
        unpacked_size(path, max(max_bytes, MAX_UNPACKED))
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in list(npz.files)[:64]}
    except Exception as exc:  # numpy raises ValueError, OSError, zipfile errors, pickle refusals
        raise InputError(
            f"{path}: not a readable .npz without pickled objects ({str(exc)[:120]}); {fix}"
        ) from None
    names = [s.name for s in signature.inputs]
    if set(arrays) != set(names):
        raise InputError(
            f"{path}: arrays {sorted(arrays)[:10]}; the model's inputs are {names} "
            f"(missing {sorted(set(names) - set(arrays))}, "
            f"unknown {sorted(set(arrays) - set(names))[:10]}); {fix}"
        )
    out, rows = {}, None
    for spec in signature.inputs:
        arr = exact(arrays[spec.name], np.dtype(spec.dtype), f"{path}: input {spec.name!r}")
        static = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int) and i > 0]
        if arr.ndim != len(spec.shape) or any(arr.shape[i] != d for i, d in static):
            raise InputError(
                f"{path}: input {spec.name!r} has shape {arr.shape}; expected {list(spec.shape)}; {fix}"
            )
        if rows is None:
            rows = arr.shape[0]
        if arr.shape[0] != rows or not 1 <= rows <= MAX_ROWS:
            raise InputError(
                f"{path}: input {spec.name!r} has {arr.shape[0]} rows; every input needs the same number "
                f"of rows, 1 to {MAX_ROWS:,}; {fix}"
            )
        out[spec.name] = arr
    return out


def unpacked_size(path: Path | io.BytesIO, limit: int = MAX_UNPACKED) -> int:
    """The uncompressed size of a zip's members; ValueError beyond `limit` bytes or 256 members."""
    with zipfile.ZipFile(path) as zf:
        members = zf.infolist()
    size = sum(m.file_size for m in members)
    if size > limit or len(members) > MAX_MEMBERS:
        raise ValueError(f"{len(members)} arrays, {size:,} bytes uncompressed; the limit is {limit:,}")
    return size


def exact(arr: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """`arr` as `dtype` when no value changes (ints in range, no float -> int, finite floats)."""
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{what}: dtype {arr.dtype}; expected {dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"{what}: contains NaN or infinity; expected finite {dtype} values")
    if (dtype.kind in "iu" and arr.dtype.kind == "f") or (dtype.kind == "b") != (arr.dtype.kind == "b"):
        raise InputError(f"{what}: dtype {arr.dtype}; expected {dtype} (values are never rounded or cast)")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    if dtype.kind in "iu" and not np.array_equal(out.astype(arr.dtype), arr):
        raise InputError(f"{what}: values out of range for {dtype}")
    if dtype.kind == "f" and not np.isfinite(out).all():
        raise InputError(f"{what}: values beyond {dtype}'s range")
    return out


def to_bytes(probe: Probe) -> bytes:
    """The .npz bytes: `inputs/<name>.npy` then `outputs/<name>.npy`, fixed timestamps (reproducible)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for kind, arrays in (("inputs", probe.inputs), ("outputs", probe.outputs)):
            for name, arr in arrays.items():
                member = io.BytesIO()
                np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{kind}/{name}.npy", _ZIP_TIME), member.getvalue())
    return buffer.getvalue()


def load(path: Path, signature: Signature, data: bytes | None = None) -> Probe:
    """Read a stored probe (its sha256 already checked) and check it matches `signature`. With
    `data` (the bytes read from `path` whose sha256 was checked), those bytes: `path` only names it."""
    source = path if data is None else io.BytesIO(data)
    try:
        unpacked_size(source)
        with np.load(source, allow_pickle=False) as npz:
            files = set(npz.files)
            want = {f"inputs/{s.name}" for s in signature.inputs} | {
                f"outputs/{s.name}" for s in signature.outputs
            }
            if files != want:
                raise IntegrityError(f"{path}: holds {sorted(files)[:12]}, expected {sorted(want)}")
            probe = Probe(
                {s.name: npz[f"inputs/{s.name}"] for s in signature.inputs},
                {s.name: npz[f"outputs/{s.name}"] for s in signature.outputs},
            )
    except IntegrityError:
        raise
    except Exception as exc:
        raise IntegrityError(f"{path}: not a readable probe file ({str(exc)[:120]})") from None
    rows = {len(a) if a.ndim else -1 for a in [*probe.inputs.values(), *probe.outputs.values()]}
    if len(rows) != 1 or rows == {-1} or rows == {0}:
        raise IntegrityError(f"{path}: inputs and outputs do not have the same number of rows")
    return probe
