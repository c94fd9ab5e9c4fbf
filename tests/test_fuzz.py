"""Fuzz every route of the server from its own OpenAPI document (schemathesis, in-process ASGI).

For each operation in `GET /openapi.json`, schema-valid (positive) and schema-violating
(negative) requests; every response is checked: no 5xx, status code / content type / headers
/ body conform to the document, schema-violating requests are refused, and no error body leaks
a path or a traceback. `positive_data_acceptance` is excluded on purpose: the schema cannot say
everything the server checks (shape must match the data's length and the model's width, values
must be finite and fit float32, ...), so a schema-valid but semantically invalid request gets 400
by design. Bounded: a fixed number of examples per operation and mode (well under a minute).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from serve.engine.registry import Registry
from serve.http.app import create_app
from serve.http.config import ServeConfig
from serve.http.openapi import document
from tests.anysig_helpers import NAME as ANY_NAME
from tests.anysig_helpers import anysig_dir
from tests.serve_app import MODELS, assert_no_leak

EXAMPLES = 100  # per operation and generation mode
# (path, method, mode): negative cases only where there is something to get wrong (parameters or a body).
OPERATIONS = [
    (path, method.upper(), mode)
    for path, item in document(MODELS)["paths"].items()
    for method, op in item.items()
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or op.get("parameters") or op.get("requestBody")
]
CASES = {"tried": 0, "by_status": {}}


@pytest.fixture(scope="module")
def api_schema(exported_dir):
    registry = Registry(exported_dir)
    registry.load_all()
    app = create_app(ServeConfig(artifacts=exported_dir, max_rows=64, max_body_bytes=65536), registry)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize(
    "path, method, mode", OPERATIONS, ids=[f"{m} {p} {g.value}" for p, m, g in OPERATIONS]
)
def test_every_route_conforms(api_schema, exported_dir, path, method, mode):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case):
        response = case.call()
        CASES["tried"] += 1
        CASES["by_status"][response.status_code] = CASES["by_status"].get(response.status_code, 0) + 1
        assert response.status_code < 500, response.text
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        if response.status_code >= 400:
            assert_no_leak(response.text, exported_dir)

    fuzz()


def test_cases_were_tried():
    """Runs after the fuzz tests (file order): the count README "Reliability" quotes (pytest -s)."""
    print(f"fuzz cases tried: {CASES['tried']}; by status: {dict(sorted(CASES['by_status'].items()))}")
    assert CASES["tried"] >= 500


# The same fuzzing for a model with two inputs (float32 [batch, 3], int64 [batch, 1]) and two outputs:
# the infer, predict and metadata routes, where the general tensor handling lives (serve/engine/tensors.py).
ANY_OPERATIONS = [
    (path, method.upper(), mode)
    for path, item in document([ANY_NAME])["paths"].items()
    if "{name}" in path
    for method, op in item.items()
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or op.get("requestBody")
]


@pytest.fixture(scope="module")
def any_schema(tmp_path_factory):
    artifacts = anysig_dir(tmp_path_factory.mktemp("fuzz_anysig"))
    registry = Registry(artifacts)
    assert registry.load_all()
    app = create_app(ServeConfig(artifacts=artifacts, max_rows=64, max_body_bytes=65536), registry)
    return schemathesis.openapi.from_asgi("/openapi.json", app), artifacts


@pytest.mark.parametrize(
    "path, method, mode", ANY_OPERATIONS, ids=[f"{m} {p} {g.value}" for p, m, g in ANY_OPERATIONS]
)
def test_multi_input_model_routes_conform(any_schema, path, method, mode):
    api, artifacts = any_schema
    operation = api[path][method]
    statuses = {}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES // 2,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case):
        response = case.call()
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, response.text
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        if response.status_code >= 400:
            assert_no_leak(response.text, artifacts)

    fuzz()
    assert statuses
