"""BM25 keyword search, with jieba word segmentation for Chinese.

    bm25 = BM25([terms(t) for t in texts])
    scores = bm25.scores(terms("claim window"), allowed)   # one score per text

Our own (about 40 lines over a scipy sparse matrix) rather than rank_bm25 or
bm25s: it scores only the chunks a caller may read (`allowed`), so permissions
apply before ranking, and `terms()` is shared with the citation checker, so
"the answer's words are in the chunk" means the same thing in both places.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import cache
from typing import TYPE_CHECKING

from shoptalk.text import is_chinese

if TYPE_CHECKING:
    import numpy as np

# Latin words and numbers keep inner . , - ' / % (13.5%, KX-340, 9:30, $1,200 -> 1,200).
_TOKEN = re.compile(r"[0-9a-z]+(?:[.,:'’/-][0-9a-z]+)*%?|[\u3400-\u9fff\uf900-\ufaff]+")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how i if in is it its me my of "
    "on or our the their there this to was we what when where which who why will with you "
    "your 的 了 是 在 和 吗 呢 吧 我 我们 你 您 什么 怎么 多少 哪些".split()
)


def language(text: str) -> str:
    """'zh' when most letters are Chinese characters, else 'en'."""
    return "zh" if is_chinese(text) else "en"


@cache
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it prints dictionary loading to stderr otherwise
    return jieba


@cache
def _stemmer():
    # Snowball (Porter 2) rather than our own suffix list: the standard English stemmer.
    import snowballstemmer

    return snowballstemmer.stemmer("english")


@cache
def stem(word: str) -> str:
    """The English stem of a lowercased word ("centers" -> "center", "laptops" -> "laptop")."""
    return _stemmer().stemWord(word)


def tokens(text: str) -> list[str]:
    """Lowercased Latin words and numbers, and runs of Chinese characters (unsegmented).

    Full-width forms are folded first (NFKC): `ＫＸ－２２０` and `７５天` are KX-220 and 75天.
    """
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def terms(text: str) -> list[str]:
    """Lowercased words and numbers, Chinese segmented into words; stopwords dropped."""
    out: list[str] = []
    for token in tokens(text):
        if _CJK.match(token):
            out += [w for w in _jieba().lcut(token) if w.strip()]
        else:
            out.append(token)
    return [t for t in out if t not in STOPWORDS]


class BM25:
    def __init__(self, documents: list[list[str]], k1: float = 1.5, b: float = 0.75) -> None:
        import numpy as np
        from scipy.sparse import csc_matrix

        self.vocabulary: dict[str, int] = {}
        rows, cols, counts = [], [], []
        for row, words in enumerate(documents):
            for word, count in _counts(words).items():
                rows.append(row)
                cols.append(self.vocabulary.setdefault(word, len(self.vocabulary)))
                counts.append(count)
        n = len(documents)
        tf = csc_matrix((counts, (rows, cols)), shape=(n, len(self.vocabulary)), dtype=np.float32)
        lengths = np.array([len(words) for words in documents], dtype=np.float32)
        norm = k1 * (1 - b + b * lengths / max(float(lengths.mean()) if n else 1.0, 1.0))
        df = np.diff(tf.indptr).astype(np.float32)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        # Precomputed per-(chunk, word) weights: a query only sums columns.
        weights = tf.tocoo()
        weights.data = (
            idf[weights.col] * weights.data * (k1 + 1) / (weights.data + norm[weights.row])
        )
        self.weights = weights.tocsc()
        self.size = n

    def scores(self, query: list[str], allowed: np.ndarray | None = None) -> np.ndarray:
        import numpy as np

        columns = sorted({self.vocabulary[t] for t in query if t in self.vocabulary})
        if not columns:
            return np.zeros(self.size, dtype=np.float32)
        result = np.asarray(self.weights[:, columns].sum(axis=1)).ravel()
        return result if allowed is None else np.where(allowed, result, 0.0)


def _counts(words: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    return counts
