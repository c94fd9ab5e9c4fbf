"""Property tests: whatever `predict` is given, it returns the right answer or a PredictInputError."""

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serve import PredictInputError, load

DTYPES = st.sampled_from(
    [
        np.float16,
        np.float32,
        np.float64,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint32,
        np.uint64,
        np.bool_,
        np.complex64,
        np.str_,
        np.object_,
    ]
)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


@pytest.fixture(scope="module")
def pair(exported_dir):
    model = load("torch_linear", exported_dir)
    bare = ort.InferenceSession(str(exported_dir / "torch_linear.onnx"), providers=["CPUExecutionProvider"])
    return model, bare


def arrays():
    def build(dtype):
        if dtype in (np.str_, np.object_):
            # no NUL: numpy's str dtype cannot hold a trailing '\x00' (hypothesis refuses such elements)
            text = st.text(st.characters(exclude_characters="\x00"), max_size=3)
            return hnp.arrays(dtype, SHAPES, elements=text if dtype is np.str_ else st.none())
        return hnp.arrays(dtype, SHAPES)

    return DTYPES.flatmap(build)


PYTHON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**40), 10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=3)
    | st.complex_numbers(max_magnitude=10),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children),
    max_leaves=10,
)


def check(model, bare, x):
    try:
        y = model.predict(x)
    except PredictInputError as exc:
        assert "expected" in str(exc)
        return
    # accepted: the input was a finite real array of width 1; the result equals onnxruntime on it
    feed = np.asarray(x, dtype=np.float32).reshape(-1, 1)
    assert np.isfinite(feed).all() and feed.size > 0
    assert y.dtype == np.float32 and y.shape == (feed.shape[0], 1)
    np.testing.assert_array_equal(y, bare.run(["y"], {"x": feed})[0])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=arrays())
def test_arrays_of_any_dtype_and_shape(pair, x):
    check(*pair, x)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=PYTHON_VALUES)
def test_arbitrary_python_values(pair, x):
    check(*pair, x)
