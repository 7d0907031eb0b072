"""Where the repository is, and the settings and API key every test stack uses."""

from __future__ import annotations

from pathlib import Path

from pageperfect.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "pageperfect" / "demo"

TEST_API_KEY = "pp_the-test-suite-key"  # the API key the pipeline's API accepts and pipeline.http sends


def make_settings(**overrides) -> Settings:
    values = dict(
        openai_api_key=None,
        openai_base_url=None,
        allowed_hosts="127.0.0.1,localhost",
        database_url=None,
        temporal_address=None,
        api_keys=TEST_API_KEY,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)
