"""Crawlers that fail on purpose, put in front of the real one."""

from __future__ import annotations

import asyncio

from pageperfect.sources.crawl import CrawlError, CrawlTicket


class FlakyCrawler:
    """Fails the first `failures` submits with a retryable error, then crawls for real."""

    def __init__(self, inner, failures: int):
        self.inner, self.failures, self.calls = inner, failures, 0
        self.name = inner.name

    async def submit(self, url: str) -> CrawlTicket:
        self.calls += 1
        if self.calls <= self.failures:
            raise CrawlError("HttpError", f"injected 503 number {self.calls}", retryable=True)
        return await self.inner.submit(url)

    async def poll(self, ticket_id: str):
        return await self.inner.poll(ticket_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


class NeverDoneCrawler:
    """An external crawl that never finishes: wait_crawl polls (and heartbeats) until cancelled."""

    name = "never-done"

    def __init__(self, inner=None):
        self.polls = 0

    async def submit(self, url: str) -> CrawlTicket:
        return CrawlTicket(provider=self.name, ticket_id="never", result=None)

    async def poll(self, ticket_id: str):
        self.polls += 1
        await asyncio.sleep(0)
        return None

    async def aclose(self) -> None:
        pass


class GatedCrawler:
    """Holds every submit until `release()`, then crawls for real: a job parked in submit_crawl."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name
        self._open = asyncio.Event()

    def release(self) -> None:
        self._open.set()

    async def submit(self, url: str) -> CrawlTicket:
        await self._open.wait()
        return await self.inner.submit(url)

    async def poll(self, ticket_id: str):
        return await self.inner.poll(ticket_id)

    async def aclose(self) -> None:
        await self.inner.aclose()
