"""Settings from the environment (and a .env file), read once per process.

Secrets live here and only here: they are never copied into workflow inputs,
results or history.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # Where the services are. Unset means: start (or expect) the embedded ones.
    temporal_address: str | None = Field(default=None, alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", alias="TEMPORAL_NAMESPACE")
    # An existing cluster or Temporal Cloud: mTLS certificate files, or an API key (implies TLS).
    temporal_tls: bool = Field(default=False, alias="TEMPORAL_TLS")
    temporal_tls_cert: Path | None = Field(default=None, alias="TEMPORAL_TLS_CERT")
    temporal_tls_key: Path | None = Field(default=None, alias="TEMPORAL_TLS_KEY")
    temporal_tls_ca: Path | None = Field(default=None, alias="TEMPORAL_TLS_CA")
    temporal_api_key: SecretStr | None = Field(default=None, alias="TEMPORAL_API_KEY")
    database_url: SecretStr | None = Field(default=None, alias="DATABASE_URL")
    api_url: str = Field(default="http://127.0.0.1:8000", alias="PAGEPERFECT_API_URL")

    # `pageperfect up`
    data_dir: Path = Field(default=Path(".pageperfect"), alias="PAGEPERFECT_DATA_DIR")
    api_port: int = Field(default=8000, alias="PAGEPERFECT_API_PORT")
    temporal_port: int = Field(default=7233, alias="PAGEPERFECT_TEMPORAL_PORT")
    ui_port: int = Field(default=8233, alias="PAGEPERFECT_UI_PORT")

    # Task queues, one per kind of work, so each can be scaled on its own.
    queue_prefix: str = Field(default="pageperfect", alias="PAGEPERFECT_QUEUE_PREFIX")
    max_concurrent_per_queue: int = Field(default=20, alias="PAGEPERFECT_MAX_CONCURRENT")

    # Crawl
    allowed_hosts: str = Field(default="", alias="PAGEPERFECT_ALLOWED_HOSTS")
    crawl_provider: str = Field(default="direct", alias="PAGEPERFECT_CRAWL_PROVIDER")
    crawl_max_bytes: int = Field(default=10_000_000, alias="PAGEPERFECT_CRAWL_MAX_BYTES")
    scraper_base_url: str | None = Field(default=None, alias="PAGEPERFECT_SCRAPER_BASE_URL")
    scraper_api_key: SecretStr | None = Field(default=None, alias="PAGEPERFECT_SCRAPER_API_KEY")
    scraper_render: bool = Field(default=False, alias="PAGEPERFECT_SCRAPER_RENDER")
    scraper_premium: bool = Field(default=False, alias="PAGEPERFECT_SCRAPER_PREMIUM")

    # Embeddings and LLM: OpenAI-compatible; no key means the offline defaults.
    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    # minilm (all-MiniLM-L6-v2 on this machine), hashing (lexical) or openai; unset: openai with a key, else minilm.
    embedding_provider: Literal["minilm", "hashing", "openai"] | None = Field(
        default=None, alias="PAGEPERFECT_EMBEDDING_PROVIDER"
    )
    embedding_model: str = Field(default="text-embedding-3-small", alias="PAGEPERFECT_EMBEDDING_MODEL")
    llm_model: str = Field(default="gpt-4o-mini", alias="PAGEPERFECT_LLM_MODEL")

    # API keys the API accepts (comma-separated), besides those made with `pageperfect keys create`;
    # and the key the CLI sends to the API.
    api_keys: SecretStr | None = Field(default=None, alias="PAGEPERFECT_API_KEYS")
    api_key: SecretStr | None = Field(default=None, alias="PAGEPERFECT_API_KEY")

    # Payload encryption (AES-GCM) of everything the workflows and activities send through Temporal:
    # one base64 32-byte key, or `id:key,id:key` to rotate (encrypts with the first, decrypts with any).
    payload_key: SecretStr | None = Field(default=None, alias="PAGEPERFECT_PAYLOAD_KEY")
    payload_key_id: str = Field(default="k1", alias="PAGEPERFECT_PAYLOAD_KEY_ID")
    # Origins allowed to call the codec endpoint (the Temporal Web UI); empty means the local UI port.
    codec_cors_origins: str = Field(default="", alias="PAGEPERFECT_CODEC_CORS_ORIGINS")

    # Reuse of a stage's stored output for the same page (the old system's 24 h window).
    reuse_window_seconds: float = Field(default=24 * 3600, alias="PAGEPERFECT_REUSE_WINDOW_SECONDS")

    # How often a batch looks at a page's job that it did not start (the page was busy when its turn came).
    batch_poll_seconds: float = Field(default=30.0, gt=0, le=3600, alias="PAGEPERFECT_BATCH_POLL_SECONDS")
    # Webhooks are signed with this secret (HMAC-SHA256); read by the worker only, never sent through Temporal.
    webhook_secret: SecretStr | None = Field(default=None, alias="PAGEPERFECT_WEBHOOK_SECRET")
    # The Search Console import schedule: a service-account JSON key file, read by the worker.
    gsc_credentials_file: Path | None = Field(default=None, alias="PAGEPERFECT_GSC_CREDENTIALS")
    gsc_api_url: str = Field(
        default="https://searchconsole.googleapis.com/webmasters/v3", alias="PAGEPERFECT_GSC_API_URL"
    )
    # Prometheus metrics of the Temporal SDK (workers and client) on this port; unset means off.
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535, alias="PAGEPERFECT_WORKER_METRICS_PORT")
    worker_metrics_host: str = Field(default="0.0.0.0", alias="PAGEPERFECT_WORKER_METRICS_HOST")

    # Stage timeouts (start-to-close and heartbeat) as a multiple of the stage table's, fixed per job at
    # intake: below 1, a lost worker's activity is retried sooner.
    stage_timeout_scale: float = Field(default=1.0, gt=0, le=100, alias="PAGEPERFECT_STAGE_TIMEOUT_SCALE")
    # Job submits handled at once by one API process (a workflow start and a few statements each), and
    # how many more may wait for a slot before the API answers 503 with Retry-After.
    intake_concurrency: int = Field(default=8, ge=1, le=1000, alias="PAGEPERFECT_INTAKE_CONCURRENCY")
    intake_max_waiting: int = Field(default=500, ge=0, le=100_000, alias="PAGEPERFECT_INTAKE_MAX_WAITING")
    # How long one embedding or chat request may take before it is retried.
    provider_timeout_seconds: float = Field(default=60.0, gt=0, le=600, alias="PAGEPERFECT_PROVIDER_TIMEOUT")
    # How long Temporal keeps a closed run's history (replay --all, mirror reconcile read it). `pageperfect up`
    # sets it on its embedded dev server (30 days when unset), and on an existing cluster only when it is set.
    temporal_retention_days: float | None = Field(
        default=None, ge=1, le=3650, alias="PAGEPERFECT_TEMPORAL_RETENTION_DAYS"
    )

    @property
    def database_dsn(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None

    @property
    def env_api_keys(self) -> list[str]:
        raw = self.api_keys.get_secret_value() if self.api_keys else ""
        return [key.strip() for key in raw.split(",") if key.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
