"""What activities share inside one worker process: the pool and the providers.

Built once at worker start from the settings; tests build their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from pageperfect.settings import Settings


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


def build_providers(settings: Settings) -> tuple[Any, Any, Any | None]:
    """The crawler, the embedder and the LLM the settings ask for; offline defaults without a key."""
    from pageperfect.sources.crawl import make_crawler
    from pageperfect.analysis.embeddings import HashingEmbedder, OpenAIEmbedder
    from pageperfect.sources.guard import parse_allowed_hosts
    from pageperfect.analysis.rewrite import make_llm

    crawler = make_crawler(
        settings.crawl_provider,
        allow=parse_allowed_hosts(settings.allowed_hosts),
        scraper_base_url=settings.scraper_base_url,
        scraper_api_key=settings.scraper_api_key.get_secret_value() if settings.scraper_api_key else None,
        render=settings.scraper_render,
        premium=settings.scraper_premium,
        max_bytes=settings.crawl_max_bytes,
    )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if key:
        embedder = OpenAIEmbedder(api_key=key, base_url=settings.openai_base_url, model=settings.embedding_model,
                                  timeout=settings.provider_timeout_seconds)
    else:
        embedder = HashingEmbedder()
    llm = make_llm(key, settings.openai_base_url, settings.llm_model, timeout=settings.provider_timeout_seconds)
    return crawler, embedder, llm


async def build_resources(settings: Settings, pool: asyncpg.Pool) -> Resources:
    from db.queries import PostgresEmbeddingCache

    crawler, embedder, llm = build_providers(settings)
    return Resources(settings=settings, pool=pool, crawler=crawler, embedder=embedder, llm=llm,
                     embedding_cache=PostgresEmbeddingCache(pool))
