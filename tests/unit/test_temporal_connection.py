"""Connection settings for an existing cluster or Temporal Cloud."""

from __future__ import annotations

import pytest

from pageperfect.settings import Settings
from pageperfect.runtime.temporal import tls_config


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


def test_plain_grpc_without_tls_settings():
    assert tls_config(settings()) is False


def test_an_api_key_implies_tls():
    assert tls_config(settings(temporal_api_key="cloud-key")) is True


def test_mtls_reads_the_certificate_files(tmp_path):
    (tmp_path / "c.pem").write_bytes(b"CERT")
    (tmp_path / "k.pem").write_bytes(b"KEY")
    (tmp_path / "ca.pem").write_bytes(b"CA")
    config = tls_config(
        settings(
            temporal_tls_cert=tmp_path / "c.pem",
            temporal_tls_key=tmp_path / "k.pem",
            temporal_tls_ca=tmp_path / "ca.pem",
        )
    )
    assert (config.client_cert, config.client_private_key, config.server_root_ca_cert) == (b"CERT", b"KEY", b"CA")


def test_half_an_mtls_pair_is_refused(tmp_path):
    (tmp_path / "c.pem").write_bytes(b"CERT")
    with pytest.raises(RuntimeError, match="TEMPORAL_TLS_KEY"):
        tls_config(settings(temporal_tls_cert=tmp_path / "c.pem"))
