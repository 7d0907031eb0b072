"""The lines `analyze` prints as a stage's attempts change."""

from pageperfect.cli.watch import attempt_news


def _stage(status: str, attempt: int, **extra) -> dict:
    return {"stage": "submit_crawl", "status": status, "attempt_count": attempt, "max_attempts": 5, **extra}


def test_a_retry_is_announced_once_with_its_reason_and_time():
    retrying = _stage(
        "retrying", 1, last_error="HttpError: 503 [upstream]", next_retry_at="2026-11-29T05:21:30.1+00:00"
    )
    line = attempt_news((1, "processing"), retrying)
    assert line == "submit_crawl: attempt 1/5 failed: HttpError: 503 [upstream]; next attempt at 05:21:30"
    assert attempt_news((1, "retrying"), retrying) is None  # nothing new on the next look


def test_later_attempts_and_the_final_failure_are_announced_but_not_the_first_start():
    assert attempt_news(None, _stage("processing", 1)) is None
    assert attempt_news((1, "retrying"), _stage("processing", 2)) == "submit_crawl: attempt 2/5 started"
    assert attempt_news((5, "processing"), _stage("failed", 5, last_error="Timeout")) == (
        "submit_crawl: failed after 5 attempts: Timeout"
    )
    assert attempt_news((1, "processing"), _stage("completed", 1)) is None
