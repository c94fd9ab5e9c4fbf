"""The 30 s soak (bench/soak.py): 16 clients, valid and invalid requests, against a real server process."""

import json
from dataclasses import asdict

import pytest

from bench.soak import SoakConfig, soak

pytestmark = pytest.mark.slow


def test_soak_16_clients_30_seconds(exported_dir):
    s = soak(SoakConfig(artifacts=exported_dir, seconds=30, clients=16))
    print(json.dumps(asdict(s)))  # the figures README "Reliability" quotes (pytest -s shows them)
    assert s.valid > 1000 and s.invalid > 1000, asdict(s)
    assert s.server_errors_5xx == 0 and s.transport_errors == 0, s.examples
    assert s.wrong_status == 0 and s.wrong_numbers == 0 and s.bad_error_bodies == 0, s.examples
    assert s.rss_growth < 0.10, (s.rss_kib_after_warmup, s.rss_kib_max)
    assert s.server_alive and s.ok
