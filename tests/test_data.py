import numpy as np

from train.data import (
    ARTICLE_X,
    ARTICLE_Y,
    article_data,
    headline_input,
    least_squares,
    probe_batch,
    reference_block,
)


def test_article_data_is_float32_columns():
    data = article_data()
    assert data.x.dtype == np.float32 and data.y.dtype == np.float32
    assert data.x.shape == (6, 1) and data.y.shape == (6, 1)
    assert data.x[:, 0].tolist() == [-1, 0, 1, 2, 3, 4]
    assert data.y[:, 0].tolist() == [-3, -1, 1, 3, 5, 7]


def test_least_squares_recovers_the_line_from_the_data():
    weights, bias = least_squares(article_data())
    np.testing.assert_allclose(weights, [2.0], atol=1e-12)
    assert abs(bias + 1.0) < 1e-12
    # and it is computed, not a literal: other data gives another line
    other = article_data().__class__(
        x=article_data().x, y=article_data().y * 3, features=("x",), target="y", source="t"
    )
    np.testing.assert_allclose(least_squares(other)[0], [6.0], atol=1e-12)


def test_probe_batch_is_data_then_points_beyond_range():
    probe = probe_batch(article_data())
    assert probe[:, 0].tolist() == ARTICLE_X + [0.0, 10.0, -1000.0, 1000.0]
    assert headline_input(1).tolist() == [[10.0]]


def test_reference_block_headline_is_19():
    _, probe = reference_block(article_data())
    assert abs(probe.headline_reference_y - 19.0) < 1e-9
    assert len(probe.reference_y) == len(probe.x)
    assert probe.headline_tolerance_scale == 1.0  # the article's absolute 0.05 (std of its y is 3.4)


def test_sha256_depends_on_values_only():
    a, b = article_data(), article_data()
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    changed = a.__class__(
        x=a.x, y=np.asarray(ARTICLE_Y, np.float32).reshape(-1, 1) + 1, features=("x",), target="y", source="t"
    )
    assert changed.sha256 != a.sha256
