"""Remove exact and near-duplicate records, and split without leaking near-duplicates.

Duplicates do two kinds of harm: a fact seen ten times is over-weighted in
training, and a record whose near-copy sits in the test split makes the
scorecard measure memory instead of understanding. So:

- exact duplicates are found after normalizing (NFKC, casefold, no
  whitespace), so "Hello  World" and "hello world" are one record;
- near duplicates are found with MinHash over character n-grams of that
  normalized text. Characters, not words, because Chinese has no spaces: one
  changed character in a Chinese answer is a near duplicate too. LSH banding
  proposes candidate pairs, and every candidate is confirmed by the exact
  Jaccard similarity of the two n-gram sets, so MinHash only decides what is
  compared, never what is removed.

MinHash is vectorized with numpy: n-grams are hashed once with a polynomial
rolling hash over code points (stable across runs, unlike `hash(str)`), then
each permutation is a multiply-add-shift hash over the whole uint64 array.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterator
from itertools import combinations
from typing import Literal

import numpy as np
from pydantic import BaseModel

from shoptalk.config import DedupeSettings
from shoptalk.errors import ConfigError
from shoptalk.records import Conversation


class Cluster(BaseModel):
    kept: str
    removed: list[str]
    kind: Literal["exact", "near"]


POLY = np.uint64(0x100000001B3)  # odd base of the rolling hash (the FNV-1 prime)
SHIFT33 = np.uint64(33)
SHIFT32 = np.uint64(32)
# Texts are hashed ~128k characters and 4 permutations at a time: the temporaries
# (~4 MB) stay in cache, measured 4x faster than blocks of 1M characters.
BLOCK_CHARS = 1 << 17
PERM_BLOCK = 4
ALL_PAIRS_MAX = 32  # a bigger LSH bucket is compared against its first member only


def record_text(conv: Conversation) -> str:
    """What duplicates are judged on: every message's content."""
    return "\n".join(m.content for m in conv.messages)


def normalize(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finalizer: spreads every input bit over all 64 output bits."""
    h ^= h >> SHIFT33
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> SHIFT33
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> SHIFT33
    return h


def shingle_hashes(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the character n-grams of all `texts`, concatenated, and where each text's start.

    A text shorter than `n` is padded to one n-gram, so every text has at least one.
    """
    padded = [t if len(t) >= n else t.ljust(n, "\0") for t in texts]
    lengths = np.fromiter((len(t) for t in padded), dtype=np.int64, count=len(padded))
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    m = len(codes) - n + 1
    h = codes[:m].copy()
    for k in range(1, n):
        h *= POLY
        h += codes[k : k + m]
    h = fmix64(h)
    counts = lengths - n + 1
    offsets = np.cumsum(counts) - counts
    text_starts = np.cumsum(lengths) - lengths
    # n-grams that start inside a text and end inside it (none straddle two texts)
    index = np.arange(int(counts.sum())) + np.repeat(text_starts - offsets, counts)
    return h[index] >> SHIFT32, offsets


def blocks(texts: list[str], chars: int) -> Iterator[tuple[int, int]]:
    """(lo, hi) ranges of `texts` holding about `chars` characters each."""
    lo, size = 0, 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= chars:
            yield lo, i + 1
            lo, size = i + 1, 0
    if lo < len(texts):
        yield lo, len(texts)


def minhash(texts: list[str], settings: DedupeSettings) -> np.ndarray:
    """(len(texts), num_perm) MinHash signatures as uint32."""
    rng = np.random.default_rng(settings.seed)
    top = np.iinfo(np.uint64).max
    a = rng.integers(0, top, settings.num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
    b = rng.integers(0, top, settings.num_perm, dtype=np.uint64, endpoint=True)
    signatures = np.empty((len(texts), settings.num_perm), dtype=np.uint32)
    for lo, hi in blocks(texts, BLOCK_CHARS):
        x, offsets = shingle_hashes(texts[lo:hi], settings.ngram)
        for p in range(0, settings.num_perm, PERM_BLOCK):
            # (a*x + b) mod 2^64, high 32 bits: a 2-universal hash of 32-bit x, no division
            # needed. The shift comes after the min: the min's high bits are the min high bits.
            v = a[p : p + PERM_BLOCK, None] * x[None, :]
            v += b[p : p + PERM_BLOCK, None]
            block = np.minimum.reduceat(v, offsets, axis=1).T >> SHIFT32
            signatures[lo:hi, p : p + PERM_BLOCK] = block
    return signatures


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows): the fewest false candidates that still propose 99% of pairs at `threshold`."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= 0.99:
            return bands, rows
    return num_perm, 1


def candidate_pairs(signatures: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    """Pairs (i < j) that share all `rows` values of at least one band."""
    pairs: set[tuple[int, int]] = set()
    n = len(signatures)
    for band in range(bands):
        key = np.zeros(n, dtype=np.uint64)
        for col in range(band * rows, (band + 1) * rows):
            key = fmix64(key * POLY + signatures[:, col].astype(np.uint64))
        order = np.argsort(key, kind="stable")  # stable: members of a bucket stay in input order
        sorted_key = key[order]
        bounds = np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1
        starts, ends = np.r_[0, bounds], np.r_[bounds, n]
        for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
            members = order[s:e].tolist()
            if len(members) <= ALL_PAIRS_MAX:
                pairs.update(combinations(members, 2))
            else:
                pairs.update((members[0], j) for j in members[1:])
    return pairs


def shingles(text: str, n: int) -> set[str]:
    return {text[i : i + n] for i in range(max(len(text) - n + 1, 1))}


def near_pairs(texts: list[str], settings: DedupeSettings) -> list[tuple[int, int]]:
    """Pairs (i < j) of normalized `texts` whose n-gram Jaccard is at least the threshold, sorted."""
    if len(texts) < 2:
        return []
    bands, rows = lsh_bands(settings.threshold, settings.num_perm)
    sets: dict[int, set[str]] = {}

    def shingle_set(i: int) -> set[str]:
        if i not in sets:
            sets[i] = shingles(texts[i], settings.ngram)
        return sets[i]

    confirmed = []
    for i, j in sorted(candidate_pairs(minhash(texts, settings), bands, rows)):
        a, b = shingle_set(i), shingle_set(j)
        if len(a & b) >= settings.threshold * len(a | b):
            confirmed.append((i, j))
    return confirmed


def exact_groups(norms: list[str]) -> tuple[list[int], dict[int, list[int]]]:
    """Indices of first occurrences, and first occurrence -> later identical indices."""
    first: dict[str, int] = {}
    unique: list[int] = []
    copies: dict[int, list[int]] = {}
    for i, text in enumerate(norms):
        j = first.setdefault(text, i)
        if j == i:
            unique.append(i)
        else:
            copies.setdefault(j, []).append(i)
    return unique, copies


def find_duplicates(
    convs: list[Conversation], settings: DedupeSettings
) -> tuple[dict[int, list[int]], list[tuple[int, int]]]:
    """Exact copies (first index -> later indices) and near pairs (i < j, sorted) among the rest."""
    norms = [normalize(record_text(c)) for c in convs]
    unique, copies = exact_groups(norms)
    if not settings.near:
        return copies, []
    pairs = near_pairs([norms[i] for i in unique], settings)
    return copies, [(unique[a], unique[b]) for a, b in pairs]


def dedupe(
    convs: list[Conversation], settings: DedupeSettings | None = None
) -> tuple[list[Conversation], list[Cluster]]:
    """Keep the first record of each duplicate cluster, in input order.

    A near duplicate is removed for the earliest kept record it resembles; a
    record that resembles only removed ones is kept, so chains (A~B, B~C, A!~C)
    do not drag C away from A.
    """
    copies, near = find_duplicates(convs, settings or DedupeSettings())
    absorbed: dict[int, int] = {}
    for a, b in near:  # sorted by a: whether a was absorbed is settled before its pairs
        if a not in absorbed and b not in absorbed:
            absorbed[b] = a
    removed_by: dict[int, list[int]] = {}
    for b, a in absorbed.items():
        removed_by.setdefault(a, []).append(b)
    gone = {i for group in (*copies.values(), *removed_by.values()) for i in group}
    ordered = sorted(
        [(k, "exact", group) for k, group in copies.items()]
        + [(k, "near", group) for k, group in removed_by.items()]
    )
    clusters = [
        Cluster(kept=convs[k].id, removed=[convs[i].id for i in sorted(group)], kind=kind)
        for k, kind, group in ordered
    ]
    return [c for i, c in enumerate(convs) if i not in gone], clusters


def duplicate_components(convs: list[Conversation], settings: DedupeSettings) -> list[list[int]]:
    """Connected components of 'is an exact or near duplicate of', as sorted index lists."""
    parent = list(range(len(convs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    copies, near = find_duplicates(convs, settings)
    for i, j in [(k, i) for k, group in copies.items() for i in group] + near:
        parent[root(j)] = root(i)
    components: dict[int, list[int]] = {}
    for i in range(len(convs)):
        components.setdefault(root(i), []).append(i)
    return list(components.values())


def leakage_free_split(
    convs: list[Conversation],
    ratios: dict[str, float],
    seed: int,
    settings: DedupeSettings | None = None,
) -> dict[str, list[Conversation]]:
    """Split by `ratios` (e.g. {"train": 0.8, "val": 0.1, "test": 0.1}), seeded.

    Every group of duplicates (exact or near, chained) goes to one split, so no
    split holds a near-copy of a record in another. Groups are taken in a
    seeded random order and each goes to the split furthest below its target
    size; records keep their input order within a split.
    """
    settings = settings or DedupeSettings()
    if not ratios or any(r < 0 for r in ratios.values()) or sum(ratios.values()) <= 0:
        raise ConfigError(f"split ratios must be >= 0 with a positive sum, got {ratios}")
    components = duplicate_components(convs, settings)
    random.Random(seed).shuffle(components)
    scale = len(convs) / sum(ratios.values())
    target = {name: r * scale for name, r in ratios.items() if r > 0}
    assigned: dict[str, list[int]] = {name: [] for name in ratios}
    for component in components:
        name = max(target, key=lambda k: target[k] - len(assigned[k]))
        assigned[name] += component
    return {name: [convs[i] for i in sorted(idx)] for name, idx in assigned.items()}
