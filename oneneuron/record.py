"""`training.json`: how the models were trained, on what, and what they learned, parsed once into
frozen objects (`TrainingRecord.load(dir)`), with the same rules and errors as oneneuron/schema.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oneneuron.architecture import LINEAR, Architecture, Fitted
from oneneuron.documents import SCHEMA_VERSION, TRAINING_RECORD, Fields, check_name, open_document
from oneneuron.schema import DataInfo, Probe, Reference


@dataclass(frozen=True)
class ModelRecord:
    """One framework's training run, as `training.json` records it.

    `weights` and `bias` are the learned parameters of a linear model (None for an MLP, whose
    parameters are only in its model file); `parameters` counts them for either; `fitted` holds an
    MLP's predictions for the report (None for a linear model, whose line the report draws itself).
    """

    model: str
    framework: str
    versions: Mapping[str, str]
    model_file: str  # one name inside the artifacts directory
    model_sha256: str
    loss: str
    weights: tuple[float, ...] | None
    bias: float | None
    final_loss: float
    headline_y: float
    train_seconds: float
    loss_history: tuple[float, ...]
    standardization: Mapping[str, Any] | None = None  # train.standardize.Standardizer.to_json()
    config: Mapping[str, Any] = field(default_factory=dict)  # train.config.TrainConfig.to_json()
    architecture: Architecture = LINEAR
    parameters: int | None = None  # weights and biases in all layers
    fitted: Fitted | None = None

    @classmethod
    def parse(cls, f: Fields, n_features: int | None = None) -> ModelRecord:
        std = f.sub("standardization").obj if f.has("standardization") else None
        if std is not None:
            std_f = f.sub("standardization")
            std_f.nums("mean"), std_f.nums("scale")
        architecture = Architecture.parse(f.sub("architecture")) if f.has("architecture") else LINEAR
        linear = architecture.is_linear
        fitted = None
        if f.has("fitted") and n_features is not None:
            fitted = Fitted.parse(f.sub("fitted"), n_features)
        return cls(
            model=f.name("model"),
            framework=f.str("framework"),
            versions=f.strings("versions", optional=True),
            model_file=f.name("model_file"),
            model_sha256=f.sha256("model_sha256"),
            loss=f.str("loss"),
            weights=f.nums("weights", optional=not linear),
            bias=f.num("bias", optional=not linear),
            final_loss=f.num("final_loss"),
            headline_y=f.num("headline_y"),
            train_seconds=f.num("train_seconds"),
            loss_history=f.nums("loss_history"),
            standardization=std,
            config=f.sub("config").obj if f.has("config") else {},
            architecture=architecture,
            parameters=f.int("parameters", optional=True),
            fitted=fitted,
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "model": self.model,
            "framework": self.framework,
            "versions": dict(self.versions),
            "model_file": self.model_file,
            "model_sha256": self.model_sha256,
            "loss": self.loss,
            "weights": None if self.weights is None else list(self.weights),
            "bias": self.bias,
            "final_loss": self.final_loss,
            "headline_y": self.headline_y,
            "train_seconds": self.train_seconds,
            "standardization": None if self.standardization is None else dict(self.standardization),
            "config": dict(self.config),
            "architecture": self.architecture.to_json(),
            "parameters": self.parameters,
            "loss_history": list(self.loss_history),
        }
        if self.weights is None:  # an MLP: no single weight vector to record
            del out["weights"], out["bias"]
        if self.fitted is not None:
            out["fitted"] = self.fitted.to_json()
        return out


@dataclass(frozen=True)
class ErrorMetrics:
    """A model's error on some data rows: RMSE and R² (float64, from the recorded weights)."""

    rows: int
    rmse: float
    r2: float | None  # None: fewer than 2 rows, or a constant target (R² is undefined)

    @classmethod
    def parse(cls, f: Fields) -> ErrorMetrics:
        return cls(f.int("rows", lo=1), f.num("rmse"), f.num("r2", optional=True))

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "rmse": self.rmse, "r2": self.r2}


@dataclass(frozen=True)
class FitMetrics:
    """Error on the training rows and (with a test split) on the held-out test rows."""

    train: ErrorMetrics
    test: ErrorMetrics | None = None

    @classmethod
    def parse(cls, f: Fields) -> FitMetrics:
        test = ErrorMetrics.parse(f.sub("test")) if f.has("test") else None
        return cls(ErrorMetrics.parse(f.sub("train")), test)

    def to_json(self) -> dict[str, Any]:
        return {"train": self.train.to_json()} | ({"test": self.test.to_json()} if self.test else {})


LEAST_SQUARES = "least_squares"  # the key of the least-squares reference in TrainingRecord.metrics


@dataclass(frozen=True)
class TrainingRecord:
    """`training.json`: how the models were trained, on what, and what they learned."""

    created: str
    config: Mapping[str, Any]
    data: DataInfo
    reference: Reference
    probe: Probe
    models: Mapping[str, ModelRecord]
    library_versions: Mapping[str, str]
    # model name (and LEAST_SQUARES) -> error on train and test rows; empty in older records
    metrics: Mapping[str, FitMetrics] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def load(cls, directory: Path) -> TrainingRecord:
        """Parse and validate `directory/training.json` (MissingArtifactError when there is none)."""
        return cls.parse(open_document(directory, TRAINING_RECORD, "train"))

    @classmethod
    def parse(cls, f: Fields) -> TrainingRecord:
        version = f.obj["schema_version"]
        data = DataInfo.parse(f.sub("data"))
        models_f = f.sub("models")
        models = {}
        for key in list(models_f.obj)[:64]:
            check_name(key, lambda problem, key=key: models_f.fail(problem, key))
            record = ModelRecord.parse(models_f.sub(key), data.n_features)
            if record.model != key:
                models_f.fail(f"model {record.model!r} recorded under {key!r}", key)
            if record.weights is not None and len(record.weights) != data.n_features:
                models_f.fail(
                    f"{len(record.weights)} weights for {data.n_features} feature(s)", f"{key}.weights"
                )
            models[key] = record
        metrics = {}
        if f.has("metrics"):
            metrics_f = f.sub("metrics")
            for key in list(metrics_f.obj)[:64]:
                check_name(key, lambda problem, key=key: metrics_f.fail(problem, key))
                metrics[key] = FitMetrics.parse(metrics_f.sub(key))
        return cls(
            created=f.str("created"),
            config=f.sub("config").obj,
            data=data,
            reference=Reference.parse(f.sub("reference")),
            probe=Probe.parse(f.sub("probe"), data.n_features),
            models=models,
            library_versions=f.strings("library_versions", optional=True),
            metrics=metrics,
            schema_version=version,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "created": self.created,
            "config": dict(self.config),
            "data": self.data.to_json(),
            "reference": self.reference.to_json(),
            "probe": self.probe.to_json(),
            "models": {k: m.to_json() for k, m in sorted(self.models.items())},
            "library_versions": dict(self.library_versions),
        } | ({"metrics": {k: m.to_json() for k, m in self.metrics.items()}} if self.metrics else {})
