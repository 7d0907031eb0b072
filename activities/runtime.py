"""What activities share inside one worker process: the pool and the providers.

Built once at worker start from the settings; tests build their own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from pageperfect.settings import Settings, get_settings


@dataclass
class Resources:
    settings: Settings
    pool: asyncpg.Pool
    crawler: Any  # pageperfect.sources.crawl.CrawlProvider
    embedder: Any  # pageperfect.analysis.embeddings.EmbeddingProvider
    llm: Any | None  # pageperfect.analysis.rewrite.ChatLLM, or None for the offline briefs
    embedding_cache: Any | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    async def aclose(self) -> None:
        if hasattr(self.crawler, "aclose"):
            await self.crawler.aclose()


_current: Resources | None = None


def install(resources: Resources) -> None:
    global _current
    _current = resources


def resources() -> Resources:
    if _current is None:
        raise RuntimeError("activity resources are not installed in this process")
    return _current


def build_embedder(provider: str | None = None, settings: Settings | None = None) -> Any:
    """The embedder a provider name asks for (None: the one the settings choose), with the settings' key and URL."""
    from pageperfect.analysis.embeddings import make_embedder

    settings = settings or get_settings()
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return make_embedder(
        provider or settings.embedding_provider,
        api_key=key,
        base_url=settings.openai_base_url,
        model=settings.embedding_model,
        timeout=settings.provider_timeout_seconds,
    )


def build_providers(settings: Settings) -> tuple[Any, Any, Any | None]:
    """The crawler, the embedder and the LLM the settings ask for; offline defaults without a key."""
    from pageperfect.analysis.rewrite import make_llm
    from pageperfect.sources.crawl import make_crawler
    from pageperfect.sources.guard import parse_allowed_hosts

    crawler = make_crawler(
        settings.crawl_provider,
        allow=parse_allowed_hosts(settings.allowed_hosts),
        scraper_base_url=settings.scraper_base_url,
        scraper_api_key=settings.scraper_api_key.get_secret_value() if settings.scraper_api_key else None,
        render=settings.scraper_render,
        premium=settings.scraper_premium,
        max_bytes=settings.crawl_max_bytes,
    )
    embedder = build_embedder(settings.embedding_provider, settings)
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    llm = make_llm(key, settings.openai_base_url, settings.llm_model, timeout=settings.provider_timeout_seconds)
    return crawler, embedder, llm


async def build_resources(settings: Settings, pool: asyncpg.Pool) -> Resources:
    from db.queries import PostgresEmbeddingCache

    crawler, embedder, llm = build_providers(settings)
    if hasattr(embedder, "load"):
        # A local model is loaded when the worker starts: a missing package fails here, not in a job,
        # and the first job does not wait for it.
        await asyncio.to_thread(embedder.load)
    return Resources(
        settings=settings,
        pool=pool,
        crawler=crawler,
        embedder=embedder,
        llm=llm,
        embedding_cache=PostgresEmbeddingCache(pool),
    )
