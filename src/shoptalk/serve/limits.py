"""Per-key limits, reserved before the work starts so concurrent requests cannot overshoot.

`admit` checks and reserves, in one atomic step, one request and the most
tokens the request can use (prompt + max_tokens); `Reservation.settle` gives
back what the answer did not use. Two kinds of window:

- rpm and tpm: a sliding 60-second log of the key's requests. Exact: a fixed
  per-minute counter would let 2x the limit through across a minute boundary.
- tokens per day and per month: calendar windows in UTC, the way people read a
  quota ("50k tokens a day" resets at midnight), so a counter per window is exact.

`InProcessLimiter` keeps the counters in memory (one server process);
`RedisLimiter` keeps them in Redis, where a Lua script does the check-and-reserve
atomically, so several replicas share one set of limits.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Protocol

from shoptalk.serve.auth import Principal
from shoptalk.serve.errors import ApiError

WINDOW_S = 60.0


class Reservation:
    """Tokens held for one admitted request until it settles."""

    def __init__(
        self,
        tokens: int,
        release: Callable[[int], Awaitable[None]] | None = None,
        grow: Callable[[int, int], Awaitable[None]] | None = None,
    ):
        self.tokens = tokens
        self._release = release
        self._grow = grow
        self.settled = False

    async def grow(self, extra: int) -> None:
        """Hold `extra` more tokens for the same request, or raise a 429 (tpm, quotas).

        Not another request against rpm: a request admitted before its size is known
        (before retrieval writes its prompt) reserves its tokens once they are counted.
        """
        if extra <= 0 or self.settled:
            return
        if self._grow is not None:
            await self._grow(self.tokens + extra, extra)
        self.tokens += extra

    async def settle(self, used_tokens: int) -> None:
        """Give back the reserved tokens the request did not use (once; later calls do nothing)."""
        if self.settled:
            return
        self.settled = True
        unused = self.tokens - min(max(used_tokens, 0), self.tokens)
        if unused and self._release is not None:
            await self._release(unused)


class Limiter(Protocol):
    async def admit(self, principal: Principal, tokens: int) -> Reservation:
        """Reserve 1 request + `tokens`, or raise a 429 with Retry-After."""

    async def close(self) -> None:
        """Release connections."""


def is_limited(principal: Principal) -> bool:
    limits = (principal.rpm, principal.tpm, principal.tokens_per_day, principal.tokens_per_month)
    return any(limit is not None for limit in limits)


def too_many(message: str, retry_after_s: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after_s))
    return ApiError(
        429,
        f"{message} Try again in {seconds} s.",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(seconds)},
    )


def too_large(principal: Principal, tokens: int) -> ApiError:
    return too_many(
        f"This request needs up to {tokens} tokens (prompt + max_tokens), more than this key's "
        f"{principal.tpm} tokens per minute; lower max_tokens or shorten the prompt.",
        WINDOW_S,
    )


@dataclass(frozen=True)
class Calendar:
    """The UTC day and month `now` falls in, and the seconds until each ends."""

    day: str
    day_left_s: float
    month: str
    month_left_s: float

    @classmethod
    def at(cls, now: float) -> Calendar:
        moment = datetime.fromtimestamp(now, timezone.utc)
        day_start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        month_start = day_start.replace(day=1)
        next_month = (month_start + timedelta(days=32)).replace(day=1)
        return cls(
            day=day_start.strftime("%Y-%m-%d"),
            day_left_s=(day_start + timedelta(days=1) - moment).total_seconds(),
            month=month_start.strftime("%Y-%m"),
            month_left_s=(next_month - moment).total_seconds(),
        )


def quota_exceeded(period: str, limit: int, used: int, tokens: int, calendar: Calendar) -> ApiError:
    if period == "day":
        return too_many(
            f"Daily quota of {limit} tokens reached ({used} used, this request needs up to "
            f"{tokens}); it resets at 00:00 UTC.",
            calendar.day_left_s,
        )
    return too_many(
        f"Monthly quota of {limit} tokens reached ({used} used, this request needs up to "
        f"{tokens}); it resets on the 1st at 00:00 UTC.",
        calendar.month_left_s,
    )


def quota_refusal(
    principal: Principal, tokens: int, day_used: int, month_used: int, calendar: Calendar
) -> ApiError | None:
    per_day, per_month = principal.tokens_per_day, principal.tokens_per_month
    if per_day is not None and day_used + tokens > per_day:
        return quota_exceeded("day", per_day, day_used, tokens, calendar)
    if per_month is not None and month_used + tokens > per_month:
        return quota_exceeded("month", per_month, month_used, tokens, calendar)
    return None


@dataclass
class KeyUsage:
    """One key's counters in process: its last minute's requests, its day and month."""

    recent: deque[list] = field(default_factory=deque)  # [start time, tokens], oldest first
    recent_tokens: int = 0  # the sum over `recent`, kept so a check is O(1)
    day: str = ""
    day_tokens: int = 0
    month: str = ""
    month_tokens: int = 0

    def roll(self, now: float, calendar: Calendar) -> None:
        while self.recent and self.recent[0][0] <= now - WINDOW_S:
            gone = self.recent.popleft()
            self.recent_tokens -= gone[1]
            gone[1] = 0  # a late settle has nothing left to give back to the window
        if self.day != calendar.day:
            self.day, self.day_tokens = calendar.day, 0
        if self.month != calendar.month:
            self.month, self.month_tokens = calendar.month, 0


def window_refusal(
    principal: Principal, usage: KeyUsage, tokens: int, now: float
) -> ApiError | None:
    """A 429 if one more request of `tokens` breaks rpm or tpm, with when it would fit."""
    if principal.rpm is not None and len(usage.recent) + 1 > principal.rpm:
        return too_many(
            f"Rate limit of {principal.rpm} requests per minute reached.",
            usage.recent[0][0] + WINDOW_S - now,
        )
    return tpm_refusal(principal, usage, tokens, tokens, now)


def tpm_refusal(
    principal: Principal, usage: KeyUsage, tokens: int, request_tokens: int, now: float
) -> ApiError | None:
    """A 429 if `tokens` more in the window break tpm (`request_tokens`: the request's all)."""
    if principal.tpm is None:
        return None
    if request_tokens > principal.tpm:
        return too_large(principal, request_tokens)
    excess = usage.recent_tokens + tokens - principal.tpm
    if excess <= 0:
        return None
    wait = WINDOW_S
    for started, n in usage.recent:  # it fits once enough old requests leave the window
        excess -= n
        if excess <= 0:
            wait = started + WINDOW_S - now
            break
    return too_many(f"Rate limit of {principal.tpm} tokens per minute reached.", wait)


class InProcessLimiter:
    """Counters in this process's memory: right for one server process."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._usage: dict[str, KeyUsage] = {}
        # A threading lock, not an asyncio one: the critical section never
        # awaits, so this costs nothing on the event loop, and it stays correct
        # if engines or tests call from other threads or event loops.
        self._lock = threading.Lock()

    async def admit(self, principal: Principal, tokens: int) -> Reservation:
        if not is_limited(principal):
            return Reservation(tokens)
        with self._lock:
            now = self.clock()
            calendar = Calendar.at(now)
            usage = self._usage.setdefault(principal.key_id, KeyUsage())
            usage.roll(now, calendar)
            refusal = window_refusal(principal, usage, tokens, now) or quota_refusal(
                principal, tokens, usage.day_tokens, usage.month_tokens, calendar
            )
            if refusal is not None:
                raise refusal
            entry = [now, tokens]
            usage.recent.append(entry)
            usage.recent_tokens += tokens
            usage.day_tokens += tokens
            usage.month_tokens += tokens

        async def release(unused: int) -> None:
            with self._lock:
                back = min(unused, entry[1])
                entry[1] -= back
                usage.recent_tokens -= back
                if usage.day == calendar.day:
                    usage.day_tokens -= unused
                if usage.month == calendar.month:
                    usage.month_tokens -= unused

        async def grow(total: int, extra: int) -> None:
            with self._lock:
                now = self.clock()
                today = Calendar.at(now)
                usage.roll(now, today)
                # A request admitted over a minute ago has left the window: its tokens
                # count against the day and month only.
                in_window = entry[0] > now - WINDOW_S
                refusal = (
                    tpm_refusal(principal, usage, extra, total, now) if in_window else None
                ) or quota_refusal(principal, extra, usage.day_tokens, usage.month_tokens, today)
                if refusal is not None:
                    raise refusal
                if in_window:
                    entry[1] += extra
                    usage.recent_tokens += extra
                usage.day_tokens += extra
                usage.month_tokens += extra

        return Reservation(tokens, release, grow)

    async def close(self) -> None:
        self._usage.clear()


# Redis runs a script alone, so check-then-reserve cannot interleave with
# another replica's. Time comes from the Redis server (TIME) so replicas with
# skewed clocks still share one window.
# KEYS: [1] zset request id -> start time (last 60 s), [2] hash request id ->
# tokens, [3] their sum, [4] the day's token counter, [5] the month's.
# ARGV: id, tokens, rpm, tpm, per_day, per_month (0 = no limit), day_left_s, month_left_s.
# Returns {"ok"} or {reason, retry_after_s, used}.
# The window as of `now`: requests older than a minute leave it, their tokens with them.
ROLL_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - 60)
for i = 1, #old, 1000 do  -- in chunks: unpack() has a stack limit
  local chunk = {unpack(old, i, math.min(i + 999, #old))}
  local freed = 0
  for _, n in ipairs(redis.call('HMGET', KEYS[2], unpack(chunk))) do
    freed = freed + tonumber(n or '0')
  end
  redis.call('HDEL', KEYS[2], unpack(chunk))
  redis.call('DECRBY', KEYS[3], freed)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60)
"""
# `tokens` more in the window break tpm (`request` tokens: the request's all)?
TPM_LUA = """
local function tpm_refusal(tokens, request)
  if request > tpm then return {'too_large', '60'} end
  local excess = tonumber(redis.call('GET', KEYS[3]) or '0') + tokens - tpm
  if excess > 0 then  -- refused: find when enough old requests leave the window
    local recent = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
    for i = 1, #recent, 2 do
      excess = excess - tonumber(redis.call('HGET', KEYS[2], recent[i]) or '0')
      if excess <= 0 then return {'tpm', tostring(tonumber(recent[i + 1]) + 60 - now)} end
    end
    return {'tpm', '60'}
  end
  return nil
end
"""
# Quotas, then count `tokens` against the day and the month.
QUOTA_LUA = """
local day = tonumber(redis.call('GET', KEYS[4]) or '0')
if per_day > 0 and day + tokens > per_day then return {'day', ARGV[7], tostring(day)} end
local month = tonumber(redis.call('GET', KEYS[5]) or '0')
if per_month > 0 and month + tokens > per_month then return {'month', ARGV[8], tostring(month)} end
"""
COUNT_LUA = """
redis.call('INCRBY', KEYS[4], tokens)
redis.call('EXPIRE', KEYS[4], math.ceil(tonumber(ARGV[7])) + 3600)
redis.call('INCRBY', KEYS[5], tokens)
redis.call('EXPIRE', KEYS[5], math.ceil(tonumber(ARGV[8])) + 3600)
return {'ok'}
"""
ARGS_LUA = """
local id, tokens = ARGV[1], tonumber(ARGV[2])
local rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])
local per_day, per_month = tonumber(ARGV[5]), tonumber(ARGV[6])
"""
ADMIT_LUA = (
    ROLL_LUA
    + ARGS_LUA
    + TPM_LUA
    + """
if rpm > 0 and redis.call('ZCARD', KEYS[1]) + 1 > rpm then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {'rpm', tostring(tonumber(oldest[2]) + 60 - now)}
end
if tpm > 0 then
  local refused = tpm_refusal(tokens, tokens)
  if refused then return refused end
end
"""
    + QUOTA_LUA
    + """
redis.call('ZADD', KEYS[1], now, id)
redis.call('HSET', KEYS[2], id, tokens)
redis.call('INCRBY', KEYS[3], tokens)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], 61) end
"""
    + COUNT_LUA
)
# Reserve `tokens` more for the admitted request `id` (not another request: rpm is not
# checked); ARGV[9] is the request's whole reservation after this. A request that has
# left the minute window counts against the day and month only.
GROW_LUA = (
    ROLL_LUA
    + ARGS_LUA
    + TPM_LUA
    + """
local held = redis.call('HGET', KEYS[2], id)
if tpm > 0 and held then
  local refused = tpm_refusal(tokens, tonumber(ARGV[9]))
  if refused then return refused end
end
"""
    + QUOTA_LUA
    + """
if held then
  redis.call('HINCRBY', KEYS[2], id, tokens)
  redis.call('INCRBY', KEYS[3], tokens)
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], 61) end
end
"""
    + COUNT_LUA
)

# Give back unused tokens: to the minute window only what the request still
# holds there (nothing once it has left it), to the day and month if their
# counters still exist.
SETTLE_LUA = """
local unused = tonumber(ARGV[2])
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local back = math.min(unused, held)
if back > 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], -back)
  redis.call('DECRBY', KEYS[3], back)
end
for i = 4, 5 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('DECRBY', KEYS[i], unused) end
end
return 1
"""


class RedisLimiter:
    """Counters in Redis, shared by every server replica that points at it."""

    def __init__(self, url: str, prefix: str = "shoptalk:limits") -> None:
        import redis.asyncio as redis

        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self._admit = self.client.register_script(ADMIT_LUA)
        self._grow = self.client.register_script(GROW_LUA)
        self._settle = self.client.register_script(SETTLE_LUA)

    def keys(self, key_id: str, calendar: Calendar) -> list[str]:
        # The {hash tag} keeps one key's counters in one Redis Cluster slot,
        # which a multi-key script needs.
        base = f"{self.prefix}:{{{key_id}}}"
        return [
            f"{base}:recent",
            f"{base}:tokens",
            f"{base}:recent_tokens",
            f"{base}:day:{calendar.day}",
            f"{base}:month:{calendar.month}",
        ]

    async def admit(self, principal: Principal, tokens: int) -> Reservation:
        if not is_limited(principal):
            return Reservation(tokens)
        from redis.exceptions import RedisError

        calendar = Calendar.at(time.time())
        keys = self.keys(principal.key_id, calendar)
        request_id = uuid.uuid4().hex
        limits = (
            principal.rpm,
            principal.tpm,
            principal.tokens_per_day,
            principal.tokens_per_month,
        )
        args = [request_id, tokens, *(limit or 0 for limit in limits)]
        try:
            answer = await self._admit(
                keys=keys, args=[*args, calendar.day_left_s, calendar.month_left_s]
            )
        except RedisError as exc:
            # Fail closed: without the shared counters no limit can be promised.
            raise ApiError(503, f"Rate-limit store unavailable ({type(exc).__name__}).") from exc
        self._raise_refusal(principal, tokens, answer, calendar)

        async def release(unused: int) -> None:
            await self._settle(keys=keys, args=[request_id, unused])

        async def grow(total: int, extra: int) -> None:
            today = Calendar.at(time.time())
            args = [request_id, extra, *(limit or 0 for limit in limits)]
            try:
                answer = await self._grow(
                    keys=keys, args=[*args, today.day_left_s, today.month_left_s, total]
                )
            except RedisError as exc:
                raise ApiError(
                    503, f"Rate-limit store unavailable ({type(exc).__name__})."
                ) from exc
            if answer[0] == "too_large":
                raise too_large(principal, total)
            self._raise_refusal(principal, extra, answer, today)

        return Reservation(tokens, release, grow)

    @staticmethod
    def _raise_refusal(
        principal: Principal, tokens: int, answer: list[str], calendar: Calendar
    ) -> None:
        reason = answer[0]
        if reason == "ok":
            return
        retry_after = float(answer[1])
        if reason == "rpm":
            raise too_many(
                f"Rate limit of {principal.rpm} requests per minute reached.", retry_after
            )
        if reason == "too_large":
            raise too_large(principal, tokens)
        if reason == "tpm":
            raise too_many(f"Rate limit of {principal.tpm} tokens per minute reached.", retry_after)
        limit = principal.tokens_per_day if reason == "day" else principal.tokens_per_month
        raise quota_exceeded(reason, limit or 0, int(answer[2]), tokens, calendar)

    async def close(self) -> None:
        await self.client.aclose()
