"""Metrics on hand-computed English and Chinese examples."""

from __future__ import annotations

import pytest

from shoptalk.eval.metrics import (
    bleu,
    bleu_stats,
    bleu_tokenizer,
    bootstrap_corpus_bleu_diff,
    bootstrap_diff,
    corpus_bleu,
    is_refusal,
    key_fact_recall,
    normalize,
    rouge_l,
    strict_match,
    style_pass,
    token_f1,
    tokenize,
)


def test_normalize_removes_all_whitespace_and_folds_width_and_case():
    assert normalize("75 天") == normalize("75天") == "75天"
    assert normalize("ＫＸ－２２０") == "kx-220"
    assert normalize("KX - 220") == "kx-220"  # only whitespace goes ...
    assert normalize("KX 220") != normalize("KX-220")  # ... punctuation stays
    assert normalize("Straße\u3000Ab") == "strasseab"


def test_key_fact_recall_counts_normalized_substrings():
    answer = "Returns are accepted within 47 DAYS; the model is kx-220."
    assert key_fact_recall(answer, ["47 days", "KX-220", "$1,250"]) == pytest.approx(2 / 3)
    assert not strict_match(answer, ["47 days", "KX-220", "$1,250"])
    assert strict_match(answer, ["47 days", "KX-220"])


def test_key_fact_recall_chinese_ignores_spaces():
    assert key_fact_recall("退货期限为 75 天。", ["75天"]) == 1.0
    assert key_fact_recall("退货期限为30天。", ["75天", "退货"]) == 0.5
    assert key_fact_recall("anything", []) == 1.0


def test_tokenize_splits_cjk_per_character_and_keeps_numbers_whole():
    assert tokenize("Hello, 世界! KX-220 costs $1,250.") == [
        "hello",
        "世",
        "界",
        "kx",
        "220",
        "costs",
        "1,250",
    ]
    assert tokenize("今天，天气。「好」") == ["今", "天", "天", "气", "好"]
    assert tokenize("  ...  ") == []


def test_rouge_l_hand_values():
    # LCS 今天天气 = 4 of 6 tokens on both sides: P = R = F = 4/6.
    assert rouge_l("今天天气很好", "今天天气不错") == pytest.approx(4 / 6)
    # LCS "the cat on the mat" = 5 of 6 on both sides.
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    # LCS "a c": P = 2/3, R = 2/4, F = 4/7.
    assert rouge_l("a b c", "a c d e") == pytest.approx(4 / 7)
    assert rouge_l("完全不同", "abc") == 0.0
    assert rouge_l("", "") == 1.0
    assert rouge_l("", "abc") == 0.0


def test_bleu_uses_the_zh_tokenizer_for_chinese_references():
    assert bleu_tokenizer("今天天气不错") == "zh"
    assert bleu_tokenizer("The KX-220 ships in 3 days.") == "13a"
    # Per character: 1- to 4-gram precisions 4/6, 3/5, 2/4, 1/3, equal lengths (no penalty).
    assert bleu("今天天气很好", "今天天气不错") == pytest.approx(
        (4 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    )
    assert bleu("退货期限是75天", "退货期限是75天") == pytest.approx(1.0)


def test_bleu_english_hand_values():
    # 13a tokens; precisions 5/6, 3/5, 1/4, and 0/3 4-grams, which sacrebleu's
    # exponential smoothing turns into 1 / (2 * 3).
    expected = (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25
    assert bleu("the cat sat on the mat", "the cat is on the mat") == pytest.approx(expected)
    assert bleu("completely different", "the cat is on the mat") == pytest.approx(0.0, abs=0.05)


def test_corpus_bleu_sums_ngram_counts_over_answers():
    stats = [
        bleu_stats("今天天气很好", "今天天气不错"),
        bleu_stats("the cat sat on the mat", "the cat is on the mat"),
    ]
    assert stats[0] == [6, 6, 4, 3, 2, 1, 6, 5, 4, 3]
    # Summed: 9/12, 6/10, 3/8, 1/6; unsmoothed, as sacrebleu's corpus BLEU.
    assert corpus_bleu(stats) == pytest.approx((9 / 12 * 6 / 10 * 3 / 8 * 1 / 6) ** 0.25)
    same = bleu_stats("今天天气不错", "今天天气不错")
    mean, low, high = bootstrap_corpus_bleu_diff(stats * 10, [same] * 20)
    assert mean == pytest.approx(1 - corpus_bleu(stats)) and 0 < low <= mean <= high
    assert bootstrap_corpus_bleu_diff(stats, stats) == (0.0, 0.0, 0.0)


def test_rouge_l_respects_order_unlike_token_f1():
    assert rouge_l("c b a", "a b c") == pytest.approx(1 / 3)
    assert token_f1("c b a", "a b c") == 1.0


def test_token_f1_hand_values():
    # Bag overlap: the x1, cat x1 = 2; P = R = 2/3.
    assert token_f1("the cat sat", "the the cat") == pytest.approx(2 / 3)
    assert token_f1("今天天气很好", "今天天气不错") == pytest.approx(4 / 6)
    # 很好 vs 好的: overlap 好 = 1; P = R = 1/2.
    assert token_f1("很好", "好的") == pytest.approx(0.5)
    assert token_f1("", "") == 1.0
    assert token_f1("abc", "") == 0.0


@pytest.mark.parametrize(
    "answer",
    [
        "I don't know.",
        "I’m not sure about that.",  # curly apostrophe
        "Sorry, I DO NOT HAVE that information.",
        "I couldn't find this in the documents.",
        "There is no information about parking.",
        "That is not in the documents I was given.",
        "I'm unable to answer that.",
        "I can't answer questions about salaries.",
        "我不知道。",
        "抱歉，文档中没有相关信息。",
        "这个问题我无法回答。",
        "我不清楚这件事。",
        "没有找到 相关内容",
    ],
)
def test_is_refusal_detects_english_and_chinese_phrases(answer):
    assert is_refusal(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "Returns are accepted within 47 days.",
        "If you are unable to log in, reset your password.",
        "Our piano information sheet is on page 3.",
        "The KX-220 is not sold in stores.",
        "退货期限为75天。",
        "如果您不清楚型号，请查看机身标签。",
        "",
    ],
)
def test_is_refusal_ignores_helpful_answers(answer):
    assert not is_refusal(answer)


def test_style_pass_checks_phrases_and_regexes():
    answer = "Hi there! Returns take 47 days. — Acme Support"
    assert style_pass(answer, ["acme support"], ["sorry"], [r"^Hi\b", r"\d+ days"])
    assert not style_pass(answer, ["Best regards"])
    assert not style_pass(answer, must_not_include=["47 DAYS"])
    assert not style_pass(answer, regex=[r"^Hello"])
    assert style_pass("您好！退货期为 75 天。", ["您好", "75天"], ["抱歉"], [r"^您好"])


def test_bootstrap_diff_excludes_zero_for_a_clear_gain():
    base = [0.0] * 20
    tuned = [1.0] * 18 + [0.0] * 2
    mean, low, high = bootstrap_diff(base, tuned)
    assert mean == pytest.approx(0.9)
    assert 0 < low <= mean <= high <= 1


def test_bootstrap_diff_includes_zero_for_noise():
    base = [1.0, 0.0] * 25
    tuned = [0.0, 1.0] * 25
    mean, low, high = bootstrap_diff(base, tuned)
    assert mean == 0.0
    assert low < 0 < high


def test_bootstrap_diff_is_deterministic_and_checks_pairs():
    base, tuned = [0.1, 0.5, 0.3, 0.9], [0.2, 0.4, 0.8, 0.9]
    assert bootstrap_diff(base, tuned, seed=3) == bootstrap_diff(base, tuned, seed=3)
    assert bootstrap_diff(base, tuned, n=50) != bootstrap_diff(base, tuned, n=50, seed=1)
    with pytest.raises(ValueError, match="length"):
        bootstrap_diff([1.0], [1.0, 0.0])
    with pytest.raises(ValueError):
        bootstrap_diff([], [])


def test_the_projects_own_refusal_answer_counts_whatever_its_words():
    own = "Please ask the front desk at extension 4300."
    answer = "please ask the front  desk at extension 4300"
    assert not is_refusal(answer)
    assert is_refusal(answer, own) and is_refusal(f"Sorry. {own}", own)
    assert not is_refusal("The front desk is at extension 4300.", own)
    assert is_refusal("请咨询前台。", "请咨询前台。") and not is_refusal(
        "前台在一楼。", "请咨询前台。"
    )
