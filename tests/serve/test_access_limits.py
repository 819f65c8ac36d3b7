"""The in-process limiter: atomic reservations, sliding minute windows, calendar quotas."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

import pytest

from shoptalk.serve.auth import Principal
from shoptalk.serve.errors import ApiError
from shoptalk.serve.limits import Calendar, InProcessLimiter

NOON = datetime(2026, 3, 31, 12, 0, tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def principal(**limits) -> Principal:
    return Principal(key_id="key_1", name="alice", scopes=frozenset({"chat"}), **limits)


async def admit_all(limiter, who: Principal, tokens: list[int]) -> list:
    """Fire every request at once; each result is a Reservation or the ApiError."""

    async def one(n: int):
        try:
            return await limiter.admit(who, n)
        except ApiError as exc:
            return exc

    return await asyncio.gather(*(one(n) for n in tokens))


def refused(results: list) -> list[ApiError]:
    return [r for r in results if isinstance(r, ApiError)]


def test_concurrent_requests_over_rpm_exactly_k_pass_the_rest_429():
    limiter = InProcessLimiter(clock=Clock())
    results = asyncio.run(admit_all(limiter, principal(rpm=3), [1] * 10))
    errors = refused(results)
    assert len(results) - len(errors) == 3
    assert len(errors) == 7
    assert all(e.status == 429 and e.code == "rate_limit_exceeded" for e in errors)
    assert {e.headers["Retry-After"] for e in errors} == {"60"}


def test_threads_with_their_own_event_loops_share_one_limit():
    limiter = InProcessLimiter(clock=Clock())
    who = principal(rpm=5)
    barrier = threading.Barrier(12)
    results: list = []

    def one() -> None:
        barrier.wait()
        results.extend(asyncio.run(admit_all(limiter, who, [1])))

    threads = [threading.Thread(target=one) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) - len(refused(results)) == 5


def test_the_minute_window_slides():
    clock = Clock()
    limiter = InProcessLimiter(clock=clock)
    who = principal(rpm=2)
    asyncio.run(limiter.admit(who, 1))
    clock.now += 20
    asyncio.run(limiter.admit(who, 1))
    clock.now += 30  # 50 s after the first: still two in the window
    with pytest.raises(ApiError) as refusal:
        asyncio.run(limiter.admit(who, 1))
    assert refusal.value.headers["Retry-After"] == "10"
    clock.now += 10  # the first one leaves the window
    asyncio.run(limiter.admit(who, 1))


def test_token_limit_reserves_the_worst_case_and_settle_gives_back_the_rest():
    clock = Clock()
    limiter = InProcessLimiter(clock=clock)
    who = principal(tpm=100)

    async def scenario():
        first = await limiter.admit(who, 60)  # prompt + max_tokens
        with pytest.raises(ApiError, match="100 tokens per minute"):
            await limiter.admit(who, 60)
        await first.settle(20)  # the answer was short
        await first.settle(0)  # settling twice changes nothing
        await limiter.admit(who, 80)
        with pytest.raises(ApiError):
            await limiter.admit(who, 1)

    asyncio.run(scenario())


def test_a_settle_after_the_window_moved_on_gives_nothing_back_twice():
    clock = Clock()
    limiter = InProcessLimiter(clock=clock)
    who = principal(tpm=100)

    async def scenario():
        slow = await limiter.admit(who, 100)
        clock.now += 61  # a long generation: its tokens already left the window
        fresh = await limiter.admit(who, 100)
        await slow.settle(0)  # must not free the fresh request's tokens
        with pytest.raises(ApiError):
            await limiter.admit(who, 1)
        await fresh.settle(40)
        await limiter.admit(who, 60)

    asyncio.run(scenario())


def test_concurrent_token_reservations_never_overshoot():
    limiter = InProcessLimiter(clock=Clock())
    results = asyncio.run(admit_all(limiter, principal(tokens_per_day=1000), [300] * 8))
    assert len(results) - len(refused(results)) == 3  # 3 x 300 fits in 1000, a 4th does not
    assert "Daily quota of 1000 tokens" in refused(results)[0].message


def test_a_request_larger_than_the_token_limit_says_so():
    with pytest.raises(ApiError, match="needs up to 500 tokens.*lower max_tokens"):
        asyncio.run(InProcessLimiter(clock=Clock()).admit(principal(tpm=100), 500))


def test_daily_quota_resets_at_utc_midnight_and_says_when():
    clock = Clock(datetime(2026, 3, 31, 23, 59, 30, tzinfo=timezone.utc).timestamp())
    limiter = InProcessLimiter(clock=clock)
    who = principal(tokens_per_day=100, tokens_per_month=150)
    asyncio.run(limiter.admit(who, 100))
    with pytest.raises(ApiError) as refusal:
        asyncio.run(limiter.admit(who, 10))
    assert refusal.value.headers["Retry-After"] == "30"
    clock.now += 31  # April 1st: a new day and a new month
    asyncio.run(limiter.admit(who, 100))
    clock.now += 86400  # April 2nd: the day resets, the month does not
    with pytest.raises(ApiError, match="Monthly quota of 150"):
        asyncio.run(limiter.admit(who, 100))


def test_keys_without_limits_are_not_counted():
    limiter = InProcessLimiter(clock=Clock())
    results = asyncio.run(admit_all(limiter, principal(), [10**9] * 5))
    assert not refused(results)


def test_calendar_windows():
    end_of_year = Calendar.at(datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc).timestamp())
    assert (end_of_year.day, end_of_year.month) == ("2026-12-31", "2026-12")
    assert end_of_year.day_left_s == end_of_year.month_left_s == 3600


def test_a_reservation_grows_without_counting_another_request():
    # A request admitted before retrieval (1 token) reserves its prompt's tokens once
    # they are counted: against tpm and quotas, never against rpm.
    async def scenario():
        limiter = InProcessLimiter(clock=Clock())
        who = principal(rpm=2, tpm=100, tokens_per_day=150)
        first = await limiter.admit(who, 1)
        await first.grow(59)
        assert first.tokens == 60
        second = await limiter.admit(who, 1)  # rpm 2: the grown request counted once
        with pytest.raises(ApiError, match="100 tokens per minute"):
            await second.grow(50)  # 60 + 1 + 50 > 100
        with pytest.raises(ApiError, match="needs up to 101 tokens"):
            await second.grow(100)  # the request alone: more than tpm
        await second.grow(39)
        await second.settle(10)  # 30 of its 40 come back
        await first.settle(60)
        with pytest.raises(ApiError, match="Rate limit of 2 requests"):
            await limiter.admit(who, 1)
        return limiter

    asyncio.run(scenario())


def test_a_grown_reservation_keeps_the_daily_quota():
    async def scenario():
        limiter = InProcessLimiter(clock=Clock())
        who = principal(tokens_per_day=100)
        held = await limiter.admit(who, 1)
        await held.grow(79)
        with pytest.raises(ApiError, match="Daily quota of 100 tokens reached"):
            await (await limiter.admit(who, 1)).grow(30)
        await held.settle(50)  # 30 back: 50 + the refused request's 1 held
        other = await limiter.admit(who, 1)
        await other.grow(48)  # 50 + 1 + 1 + 48 = 100
        with pytest.raises(ApiError, match="Daily quota"):
            await limiter.admit(who, 1)

    asyncio.run(scenario())
