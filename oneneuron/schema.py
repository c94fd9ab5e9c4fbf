"""The artifacts directory's schema: `manifest.json` parsed once into frozen objects
(`training.json` is oneneuron/record.py; the reading and field access both use is oneneuron/documents.py).

Every reader calls `Manifest.load(dir)` or `TrainingRecord.load(dir)`; every writer builds these
objects and calls `to_json()`. Nothing else reads their keys from a dict. Parsing validates
everything a consumer relies on, and each failure is one `SchemaError` (an `IntegrityError`)
naming the file, the field and the fix (see README "Artifacts" for the rules):

- names match `NAME_PATTERN` (not only dots) and are unique per format;
- paths and aliases are one relative name inside the directory (`oneneuron.fsio.Root` resolves them,
  symlinks followed, and opens only regular files, or a directory for a SavedModel);
- hashes are 64 hex digits; numbers are finite; strings, lists and the file itself are bounded;
- formats and dtypes come from closed sets; JSON nesting is bounded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oneneuron.architecture import Architecture
from oneneuron.contract import CONTRACT
from oneneuron.documents import (
    DTYPES,
    FORMATS,
    MANIFEST,
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_JSON_BYTES,
    MAX_STRING,
    NAME_PATTERN,
    SCHEMA_VERSION,
    SELFTEST_ATOL,
    SELFTEST_RTOL,
    SIGNATURE,
    TRAINING_RECORD,
    Fields,
    check_name,
    finite,
    open_document,
    preview,
    read_json,
)

__all__ = [  # the shared names, for the modules that import them from here
    "DTYPES",
    "FORMATS",
    "MANIFEST",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_JSON_BYTES",
    "MAX_STRING",
    "NAME_PATTERN",
    "SCHEMA_VERSION",
    "SELFTEST_ATOL",
    "SELFTEST_RTOL",
    "SIGNATURE",
    "TRAINING_RECORD",
    "Fields",
    "check_name",
    "finite",
    "open_document",
    "read_json",
]


_DIM = r"[A-Za-z_][A-Za-z0-9_]{0,63}"  # a dimension name (TensorSpec shapes)


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: dtype from `DTYPES`; shape of ints (static) and strings (named dynamic dims)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    @classmethod
    def parse(cls, f: Fields) -> TensorSpec:
        name = f.str("name")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,127}", name):
            f.fail(
                f"{name[:80]!r} is not a valid tensor name (a letter or _, then letters, digits, _ . : / -)",
                "name",
            )
        dtype = f.str("dtype")
        if dtype not in DTYPES:
            f.fail(f"{dtype[:40]!r} is not one of {', '.join(sorted(DTYPES))}", "dtype")
        shape = []
        for i, d in enumerate(f.list("shape") or []):
            if type(d) is int and 0 <= d <= 1 << 31 or isinstance(d, str) and re.fullmatch(_DIM, d):
                shape.append(d)
            else:
                f.fail(f"expected a size >= 0 or a dimension name, got {preview(d)}", f"shape[{i}]")
        if len(shape) > 8:
            f.fail(f"rank {len(shape)} > 8", "shape")
        return cls(name, dtype, tuple(shape))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """A model's named inputs and outputs."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def parse(cls, f: Fields) -> Signature:
        sig = cls(f.items("inputs", TensorSpec.parse), f.items("outputs", TensorSpec.parse))
        for kind, specs in (("inputs", sig.inputs), ("outputs", sig.outputs)):
            names = [s.name for s in specs]
            if not names:
                f.fail("expected at least one tensor", kind)
            if len(set(names)) != len(names):
                f.fail(f"duplicate tensor names {sorted(names)}", kind)
        return sig

    def to_json(self) -> dict[str, Any]:
        return {"inputs": [s.to_json() for s in self.inputs], "outputs": [s.to_json() for s in self.outputs]}


def linear_signature(n_features: int) -> Signature:
    """The article's signature: x float32 [batch, n] -> y float32 [batch, 1]."""
    return Signature(
        (TensorSpec("x", "float32", ("batch", n_features)),), (TensorSpec("y", "float32", ("batch", 1)),)
    )


@dataclass(frozen=True)
class DataSplit:
    """Which data rows were held out as test rows (`--test-fraction`): reproducible from the seed."""

    seed: int  # numpy.random.default_rng(seed).permutation(rows): the first `test_rows` are test rows
    test_fraction: float  # what was asked for; `test_rows` is floor(test_fraction * rows)
    train_rows: int
    test_rows: int
    test_index_sha256: str  # of the sorted 0-based test row indices as little-endian int64 bytes

    @classmethod
    def parse(cls, f: Fields) -> DataSplit:
        fraction = f.num("test_fraction")
        if not 0 <= fraction < 1:
            f.fail(f"{fraction} is not in [0, 1)", "test_fraction")
        return cls(
            f.int("seed", lo=-(1 << 63), hi=(1 << 63) - 1),
            fraction,
            f.int("train_rows", lo=1),
            f.int("test_rows"),
            f.sha256("test_index_sha256"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "test_fraction": self.test_fraction,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "test_index_sha256": self.test_index_sha256,
        }


@dataclass(frozen=True)
class DataInfo:
    """What the models were trained on (its identity, not its rows)."""

    source: str  # "article" or the CSV's path
    sha256: str  # of the float32 bytes of x then y (every data row, test rows included)
    rows: int
    features: tuple[str, ...]
    target: str
    file_sha256: str | None = None  # a CSV file's own bytes
    columns: tuple[str, ...] = ()  # the file's header (the article's data: x, y); () in older records
    split: DataSplit | None = None  # the held-out test rows; None: every row trained

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def train_rows(self) -> int:
        return self.split.train_rows if self.split else self.rows

    @classmethod
    def parse(cls, f: Fields) -> DataInfo:
        features = tuple(f.list("features") or [])
        columns = tuple(f.list("columns", optional=True) or [])
        for key, names in (("features", features), ("columns", columns)):
            for i, name in enumerate(names):
                if not isinstance(name, str) or not name or len(name) > 256:
                    f.fail(f"expected a column name, got {preview(name)}", f"{key}[{i}]")
        if not features:
            f.fail("expected at least one feature", "features")
        if f.has("n_features") and f.int("n_features", lo=1) != len(features):
            f.fail(f"{f.obj['n_features']} != {len(features)} feature names", "n_features")
        file_sha256 = f.sha256("file_sha256") if f.has("file_sha256") else None
        rows = f.int("rows", lo=1)
        split = DataSplit.parse(f.sub("split")) if f.has("split") else None
        if split is not None and split.train_rows + split.test_rows != rows:
            f.fail(f"{split.train_rows} train + {split.test_rows} test rows != {rows} rows", "split")
        return cls(
            f.str("source"), f.sha256("sha256"), rows, features, f.str("target"), file_sha256, columns, split
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "source": self.source,
            "sha256": self.sha256,
            "rows": self.rows,
            "n_features": self.n_features,
            "features": list(self.features),
            "target": self.target,
        }
        if self.columns:
            out |= {"columns": list(self.columns), "shape": [self.rows, self.n_features + 1]}
        if self.split is not None:
            out["split"] = self.split.to_json()
        return out | ({"file_sha256": self.file_sha256} if self.file_sha256 else {})


@dataclass(frozen=True)
class Reference:
    """The least-squares answer (numpy, float64) both models approach."""

    method: str
    weights: tuple[float, ...]
    bias: float

    @classmethod
    def parse(cls, f: Fields) -> Reference:
        return cls(f.str("method"), f.nums("weights"), f.num("bias"))

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "weights": list(self.weights), "bias": self.bias}


@dataclass(frozen=True)
class Probe:
    """The rows every artifact is checked on, and the headline point (the article's x = 10)."""

    x: tuple[tuple[float, ...], ...]
    reference_y: tuple[float, ...]
    headline_x: tuple[float, ...]
    headline_reference_y: float
    # The check's headline bound is |y(headline) - reference| <= analytic_tol · headline_tolerance_scale:
    # max(1, std of the training target) for a CSV, 1 for the article's data (and in older files).
    headline_tolerance_scale: float = 1.0

    @classmethod
    def parse(cls, f: Fields, n_features: int) -> Probe:
        scale = f.num("headline_tolerance_scale", optional=True)
        if scale is not None and scale < 1:
            f.fail(f"{scale} < 1 (it is max(1, std of the target))", "headline_tolerance_scale")
        probe = cls(
            f.rows("x"),
            f.nums("reference_y"),
            f.nums("headline_x"),
            f.num("headline_reference_y"),
            1.0 if scale is None else scale,
        )
        if not probe.x or any(len(row) != n_features for row in probe.x):
            f.fail(f"expected one or more rows of {n_features} number(s)", "x")
        if len(probe.reference_y) != len(probe.x):
            f.fail(f"{len(probe.reference_y)} values for {len(probe.x)} probe rows", "reference_y")
        if len(probe.headline_x) != n_features:
            f.fail(f"{len(probe.headline_x)} values for {n_features} feature(s)", "headline_x")
        return probe

    def to_json(self) -> dict[str, Any]:
        return {
            "x": [list(r) for r in self.x],
            "reference_y": list(self.reference_y),
            "headline_x": list(self.headline_x),
            "headline_reference_y": self.headline_reference_y,
            "headline_tolerance_scale": self.headline_tolerance_scale,
        }


@dataclass(frozen=True)
class ProbeRef:
    """A brought-in model's probe file (`<model>.<sha12>.probe.npz`: `inputs/<name>` and the source
    framework's `outputs/<name>`), shared by every artifact of that model; confined like `path`."""

    path: str
    sha256: str

    @classmethod
    def parse(cls, f: Fields) -> ProbeRef:
        return cls(f.name("path"), f.sha256("sha256"))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256}


# The runtimes whose outputs an adopted ONNX file's probe stores (export/from_onnx.py).
ADOPTION_REFERENCES = ("onnx.reference", "onnxruntime")


@dataclass(frozen=True)
class Adoption:
    """An ONNX file adopted as it is (export.all --from-onnx, export/from_onnx.py): who made it and
    which runtime's outputs its probe file stores (the entry's `source_file`, `source_sha256` and
    `opset` say which file)."""

    producer_name: str  # the file's own producer_name ("" when it names none)
    producer_version: str
    reference: str  # one of ADOPTION_REFERENCES: the runtime whose outputs are the probe's outputs
    reference_note: str  # how the other runtime agreed, or why onnx.reference could not run it
    dims: Mapping[str, int] = field(default_factory=dict)  # probe sizes of dynamic dims (--dim)

    @classmethod
    def parse(cls, f: Fields) -> Adoption:
        reference = f.str("reference")
        if reference not in ADOPTION_REFERENCES:
            f.fail(f"{reference[:40]!r} is not one of {', '.join(ADOPTION_REFERENCES)}", "reference")
        dims = f.sub("dims") if f.has("dims") else None
        sizes = {} if dims is None else {k: dims.int(k, lo=1, hi=1 << 31) for k in list(dims.obj)[:64]}
        if dims is not None and (len(dims.obj) > 64 or not all(re.fullmatch(_DIM, k) for k in sizes)):
            f.fail("expected at most 64 dimension names with sizes", "dims")
        return cls(
            f.str("producer_name", optional=True) or "",
            f.str("producer_version", optional=True) or "",
            reference,
            f.str("reference_note"),
            sizes,
        )

    def to_json(self) -> dict[str, Any]:
        out = {"reference": self.reference, "reference_note": self.reference_note, "dims": dict(self.dims)}
        named = {"producer_name": self.producer_name, "producer_version": self.producer_version}
        return {k: v for k, v in named.items() if v} | out


# A variant's budget metrics (export/budget.py measures them) -> the direction of the limit.
BUDGET_METRICS: Mapping[str, str] = {"top1": ">=", "topk": ">=", "abs": "<=", "rel": "<="}
VARIANT_METHODS = ("int8-dynamic", "int8-static", "fp16", "graph-opt")


def _figures(f: Fields, key: str, allowed: Mapping[str, Any] | tuple[str, ...]) -> Mapping[str, float]:
    """A flat JSON object of finite numbers whose keys come from `allowed`."""
    sub = f.sub(key)
    if len(sub.obj) > 16:
        f.fail(f"expected at most 16 figures, got {len(sub.obj)}", key)
    for k in sub.obj:
        if k not in allowed:
            sub.fail(f"{str(k)[:40]!r} is not one of {', '.join(allowed)}")
    return {k: sub.num(k) for k in sub.obj}


PERFORMANCE = ("size", "parent_size", "ms_b1", "parent_ms_b1", "ms_b8", "parent_ms_b8")


@dataclass(frozen=True)
class Variant:
    """What makes an entry a variant of another model (export/optimize.py): its fp32 parent, how it
    was made, the accuracy budget it was proven within and the figures measured when it was made."""

    parent: str  # the parent's model name (the variant's own is <parent>.<kind>, e.g. mlp.int8)
    parent_sha256: str  # the parent ONNX file it was made from and compared with
    method: str  # one of VARIANT_METHODS
    settings: Mapping[str, str]  # the method's settings (e.g. onnxruntime's version for graph-opt)
    budget: Mapping[str, float]  # metric of BUDGET_METRICS -> limit (top1 >= 0.99, rel <= 0.05)
    judged_on: str  # "probe" (the probe rows) or "data" (--data VAL): where the budget was judged
    probe: Mapping[str, float]  # the budget figures on the probe rows (and "rows")
    data: Mapping[str, float] = field(default_factory=dict)  # on --data VAL, when given
    class_outputs: tuple[str, ...] = ()  # outputs compared as class scores (top-1, top-k)
    performance: Mapping[str, float] = field(default_factory=dict)  # bytes and median ms, 1 thread

    @classmethod
    def parse(cls, f: Fields) -> Variant:
        method = f.str("method")
        if method not in VARIANT_METHODS:
            f.fail(f"{method[:40]!r} is not one of {', '.join(VARIANT_METHODS)}", "method")
        judged = f.str("judged_on")
        if judged not in ("probe", "data"):
            f.fail(f"{judged[:40]!r} is not probe or data", "judged_on")
        figures = (*BUDGET_METRICS, "rows")
        outputs = tuple(f.list("class_outputs", optional=True) or [])
        if not all(isinstance(o, str) and 0 < len(o) <= 128 for o in outputs):
            f.fail("expected a list of output names", "class_outputs")
        return cls(
            parent=f.name("parent"),
            parent_sha256=f.sha256("parent_sha256"),
            method=method,
            settings=f.strings("settings", optional=True),
            budget=_figures(f, "budget", BUDGET_METRICS),
            judged_on=judged,
            probe=_figures(f, "probe", figures),
            data=_figures(f, "data", figures) if f.has("data") else {},
            class_outputs=outputs,
            performance=_figures(f, "performance", PERFORMANCE) if f.has("performance") else {},
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "parent": self.parent,
            "parent_sha256": self.parent_sha256,
            "method": self.method,
            "settings": dict(self.settings),
            "budget": dict(self.budget),
            "judged_on": self.judged_on,
            "probe": dict(self.probe),
            "class_outputs": list(self.class_outputs),
            "performance": dict(self.performance),
        }
        return out | ({"data": dict(self.data)} if self.data else {})


@dataclass(frozen=True)
class ArtifactEntry:
    """One exported artifact: its stored version, hash, signature and the source model's outputs."""

    name: str  # the stable name, e.g. keras_linear.onnx (also its alias in the directory)
    model: str  # keras_linear
    format: str  # a key of FORMATS
    framework: str  # tensorflow / torch
    framework_versions: Mapping[str, str]
    path: str  # the stored version, keras_linear.<sha12>.onnx: one name inside the directory
    sha256: str
    size: int
    signature: Signature
    created: str
    # From a training run (None / empty for a model brought in as an ONNX file, e.g. in tests):
    headline_y: float | None = None  # the source model's prediction at the probe's headline point
    source_probe_y: tuple[float, ...] = ()  # the source model's predictions on the probe rows
    training_record_sha256: str | None = None
    producer: Mapping[str, str] = field(default_factory=dict)
    opset: int | None = None  # ONNX only
    ir_version: int | None = None
    graph: tuple[str, ...] = ()  # ONNX op types, in order
    metadata: Mapping[str, str] = field(default_factory=dict)  # ONNX metadata_props
    signature_name: str | None = None  # SavedModel only
    # Per (model, format): 1 for the first export; a new content gets the highest kept version + 1,
    # an export of the same bytes keeps its number (oneneuron.manifest.commit).
    version: int = 1
    architecture: Architecture | None = None  # a trained model's; None: not from a training run
    # An MLP's per-probe-row size of the sums runtimes add up (its network with |weights| on |x|):
    # the check's bound scales with it, as the linear models' bound scales with Σ|x·w| + |b|.
    source_probe_magnitude: tuple[float, ...] = ()
    # A model brought in with export.all --from-keras/--from-torch/--from-onnx (export/byom.py):
    source_sha256: str | None = None  # the .keras / .pt2 / .onnx file's sha256 (its provenance)
    source_file: str | None = None  # that file's name, as given
    probe: ProbeRef | None = None  # the probe inputs and source outputs the check compares against
    unavailable: Mapping[str, str] = field(default_factory=dict)  # format -> why it was not produced
    variant: Variant | None = None  # a smaller/faster variant of another model (export/optimize.py)
    adopted: Adoption | None = None  # an ONNX file brought in as it is (export.all --from-onnx)

    @property
    def alias(self) -> str:
        return self.name

    @classmethod
    def parse(cls, f: Fields) -> ArtifactEntry:
        fmt = f.str("format")
        if fmt not in FORMATS:
            f.fail(f"{fmt[:40]!r} is not one of {', '.join(FORMATS)}", "format")
        name, path = f.name("name"), f.name("path")
        if f.has("alias") and f.name("alias") != name:
            f.fail(f"alias {f.obj['alias'][:80]!r} differs from name {name!r}", "alias")
        graph = tuple(f.list("graph", optional=True) or [])
        if not all(isinstance(op, str) and 0 < len(op) <= 128 for op in graph):
            f.fail("expected a list of ONNX op type names", "graph")
        return cls(
            name=name,
            model=f.name("model"),
            format=fmt,
            framework=f.str("framework"),
            framework_versions=f.strings("framework_versions", optional=True),
            path=path,
            sha256=f.sha256("sha256"),
            size=f.int("size"),
            signature=Signature.parse(f.sub("signature")),
            headline_y=f.num("headline_y", optional=True),
            source_probe_y=f.nums("source_probe_y", optional=True) or (),
            training_record_sha256=f.sha256("training_record_sha256")
            if f.has("training_record_sha256")
            else None,
            created=f.str("created"),
            producer=f.strings("producer", optional=True),
            opset=f.int("opset", optional=True, hi=1000),
            ir_version=f.int("ir_version", optional=True, hi=1000),
            graph=graph,
            metadata=f.strings("metadata", optional=True),
            signature_name=f.str("signature_name", optional=True),
            version=f.int("version", optional=True, lo=1) or 1,  # manifests before versions: 1
            architecture=Architecture.parse(f.sub("architecture")) if f.has("architecture") else None,
            source_probe_magnitude=f.nums("source_probe_magnitude", optional=True) or (),
            source_sha256=f.sha256("source_sha256") if f.has("source_sha256") else None,
            source_file=f.str("source_file", optional=True),
            probe=ProbeRef.parse(f.sub("probe")) if f.has("probe") else None,
            unavailable=f.strings("unavailable", optional=True),
            variant=Variant.parse(f.sub("variant")) if f.has("variant") else None,
            adopted=Adoption.parse(f.sub("adopted")) if f.has("adopted") else None,
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "alias": self.alias,
            "model": self.model,
            "format": self.format,
            "framework": self.framework,
            "framework_versions": dict(self.framework_versions),
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
            "signature": self.signature.to_json(),
            "created": self.created,
            "producer": dict(self.producer),
            "version": self.version,
        }
        optional = {
            "headline_y": self.headline_y,
            "source_probe_y": list(self.source_probe_y) or None,
            "training_record_sha256": self.training_record_sha256,
            "opset": self.opset,
            "ir_version": self.ir_version,
            "graph": list(self.graph) or None,
            "metadata": dict(self.metadata) or None,
            "signature_name": self.signature_name,
            "architecture": None if self.architecture is None else self.architecture.to_json(),
            "source_probe_magnitude": list(self.source_probe_magnitude) or None,
            "source_sha256": self.source_sha256,
            "source_file": self.source_file,
            "probe": self.probe.to_json() if self.probe else None,
            "unavailable": dict(self.unavailable) or None,
            "variant": self.variant.to_json() if self.variant else None,
            "adopted": self.adopted.to_json() if self.adopted else None,
        }
        return out | {k: v for k, v in optional.items() if v is not None}


@dataclass(frozen=True)
class RecordRef:
    """The training record an export read: its name and sha256."""

    path: str
    sha256: str


@dataclass(frozen=True)
class Signing:
    """The manifest's `signing` field: the signature bundle that covers this manifest (always
    `model.sig`, oneneuron/signing.py) and the sha256 of the signing key's public PEM. Informative until
    the bundle verifies with a trusted key (the bundle covers these bytes, so then it is trusted)."""

    bundle: str
    key_sha256: str

    @classmethod
    def parse(cls, f: Fields) -> Signing:
        bundle = f.name("bundle")
        if bundle != SIGNATURE:
            f.fail(f"{bundle!r}: a signature bundle is always {SIGNATURE!r}", "bundle")
        return cls(bundle, f.sha256("key_sha256"))

    def to_json(self) -> dict[str, str]:
        return {"bundle": self.bundle, "key_sha256": self.key_sha256}


# A manifest's `generation` counts its commits (oneneuron.manifest.write): one commit a second for
# 68 years stays below this; a larger value is not something this toolkit wrote.
MAX_GENERATION = CONTRACT.manifest["max_generation"]


@dataclass(frozen=True)
class Manifest:
    """`manifest.json`: the index of every exported artifact and what it was checked against.

    `training_record`, `data`, `reference` and `probe` describe the training run the artifacts were
    exported from; all four are None for a directory of models that did not come from one.

    Versions: `artifacts` holds the newest version of each (model, format), the one every consumer
    that takes "the" model uses; `previous` (JSON `previous_versions`) holds the older versions an
    export kept (`--keep-versions`), each with a lower `version` than its model's newest and its own
    stored file. `versions(model)` lists them all, oldest first.

    Generation: `generation` goes up by one with every commit that changes the manifest
    (oneneuron.manifest.write), so a signed manifest carries its place in the history: a consumer
    given a floor (--min-generation), or a server that has served a newer one, refuses an older
    manifest put back in place (docs/reliability.md "Rollback"). 0: written before generations.
    """

    training_record: RecordRef | None
    data: DataInfo | None
    reference: Reference | None
    probe: Probe | None
    artifacts: tuple[ArtifactEntry, ...]
    selftest_atol: float = SELFTEST_ATOL
    selftest_rtol: float = SELFTEST_RTOL
    schema_version: int = SCHEMA_VERSION
    previous: tuple[ArtifactEntry, ...] = ()
    signing: Signing | None = None  # set by a signed export (export/sign.py); None: unsigned
    generation: int = 0  # commits of this manifest so far (see above); 0: written before generations

    @classmethod
    def load(cls, directory: Path, data: bytes | None = None) -> Manifest:
        """Parse and validate `directory/manifest.json` (MissingArtifactError when there is none),
        or `data`, its bytes already read (oneneuron/signing.py parses the bytes it verified)."""
        return cls.parse(open_document(directory, MANIFEST, "export", data))

    @classmethod
    def parse(cls, f: Fields) -> Manifest:
        version = f.obj["schema_version"]
        trained = f.has("training_record")
        rec = f.sub("training_record") if trained else None
        data = DataInfo.parse(f.sub("data")) if trained else None
        manifest = cls(
            training_record=RecordRef(rec.name("path"), rec.sha256("sha256")) if rec else None,
            data=data,
            reference=Reference.parse(f.sub("reference")) if trained else None,
            probe=Probe.parse(f.sub("probe"), data.n_features) if data else None,
            artifacts=f.items("artifacts", ArtifactEntry.parse),
            selftest_atol=f.num("selftest_atol"),
            selftest_rtol=f.num("selftest_rtol"),
            schema_version=version,
            previous=f.items("previous_versions", ArtifactEntry.parse, optional=True),
            signing=Signing.parse(f.sub("signing")) if f.has("signing") else None,
            generation=f.int("generation", optional=True, hi=MAX_GENERATION) or 0,  # before: 0
        )
        seen: dict[tuple[str, str], int] = {}
        paths: dict[str, str] = {}
        for i, entry in enumerate(manifest.artifacts):
            key = (entry.model, entry.format)
            if key in seen or entry.name in paths:
                f.fail(
                    f"duplicate {entry.format} artifact for {entry.model!r} (see artifacts[{seen.get(key)}])",
                    f"artifacts[{i}]",
                )
            seen[key] = i
            paths[entry.name] = entry.path
            if (
                manifest.probe is not None
                and entry.probe is None
                and len(entry.source_probe_y) != len(manifest.probe.x)
            ):
                f.fail(
                    f"{len(entry.source_probe_y)} values for {len(manifest.probe.x)} probe rows",
                    f"artifacts[{i}].source_probe_y",
                )
            magnitude = entry.source_probe_magnitude
            if magnitude and (len(magnitude) != len(entry.source_probe_y) or min(magnitude) < 0):
                f.fail(
                    f"expected {len(entry.source_probe_y)} values >= 0, one per probe row",
                    f"artifacts[{i}].source_probe_magnitude",
                )
        names = {e.name for e in manifest.artifacts}
        for i, entry in enumerate(manifest.artifacts):
            if entry.path in names and entry.path != entry.name:
                f.fail(f"path {entry.path!r} is another entry's name", f"artifacts[{i}].path")
        if manifest.selftest_atol < 0 or manifest.selftest_rtol < 0:
            f.fail("tolerances must be >= 0", "selftest_atol")
        _check_previous(manifest, f)
        return manifest

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema_version": self.schema_version, "generation": self.generation}
        if self.training_record is not None:
            out["training_record"] = {
                "path": self.training_record.path,
                "sha256": self.training_record.sha256,
            }
            out |= {
                "data": self.data.to_json(),
                "reference": self.reference.to_json(),
                "probe": self.probe.to_json(),
            }
        out |= {
            "selftest_atol": self.selftest_atol,
            "selftest_rtol": self.selftest_rtol,
            "artifacts": [e.to_json() for e in self.artifacts],
        }
        if self.previous:
            out["previous_versions"] = [e.to_json() for e in self.previous]
        if self.signing is not None:
            out["signing"] = self.signing.to_json()
        return out

    def all_entries(self) -> tuple[ArtifactEntry, ...]:
        """Every kept version of every artifact: the newest ones, then the previous ones."""
        return self.artifacts + self.previous

    def versions(self, model: str, fmt: str = "onnx") -> tuple[ArtifactEntry, ...]:
        """Every kept version of `model` in format `fmt`, oldest first (the last is the default)."""
        found = [e for e in self.all_entries() if e.model == model and e.format == fmt]
        return tuple(sorted(found, key=lambda e: e.version))

    def entries(self, fmt: str | None = None) -> tuple[ArtifactEntry, ...]:
        return tuple(e for e in self.artifacts if fmt is None or e.format == fmt)

    def find(self, name: str, fmt: str | None = None) -> ArtifactEntry | None:
        """The entry named `name` (keras_linear.onnx), or of model `name` in format `fmt`."""
        for e in self.artifacts:
            if e.name == name or (e.model == name and (fmt is None or e.format == fmt)):
                return e
        return None


def _check_previous(manifest: Manifest, f: Fields) -> None:
    """Each previous version belongs to a (model, format) the manifest has, with a lower version
    than its newest, a version number and a stored file of its own."""
    newest = {(e.model, e.format): e for e in manifest.artifacts}
    seen = {(e.model, e.format, e.version) for e in manifest.artifacts}
    paths = {e.path for e in manifest.artifacts}
    for i, entry in enumerate(manifest.previous):
        where = f"previous_versions[{i}]"
        current = newest.get((entry.model, entry.format))
        if current is None or entry.name != current.name:
            f.fail(f"a previous version of {entry.name!r}, which artifacts does not list", where)
        elif entry.version >= current.version:
            f.fail(f"version {entry.version} is not older than the newest, {current.version}", where)
        elif (entry.model, entry.format, entry.version) in seen or entry.path in paths:
            f.fail(f"duplicate version {entry.version} (or stored file) of {entry.name!r}", where)
        seen.add((entry.model, entry.format, entry.version))
        paths.add(entry.path)
