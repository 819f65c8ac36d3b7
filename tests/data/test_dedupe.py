import os
import subprocess
import sys

import pytest

from shoptalk.data.dedupe import (
    DedupeSettings,
    dedupe,
    leakage_free_split,
    lsh_bands,
    minhash,
    record_text,
)
from shoptalk.errors import ConfigError
from shoptalk.records import Conversation

from factories import faq_record

RETURNS = (
    "退货期限是自签收之日起75天内，商品需保持完好，包装齐全，并附上发票和保修卡，运费由买家承担。"
)
SHIPPING = (
    "我们使用顺丰快递发货，下单后两个工作日内发出，偏远地区可能需要五到七天才能送达，请耐心等待。"
)


def ids(convs: list[Conversation]) -> list[str]:
    return [c.id for c in convs]


def test_record_text_joins_every_message():
    assert record_text(faq_record("a", "Q?", "A.")) == "Q?\nA."


def test_exact_duplicates_after_normalizing_case_width_and_spacing():
    convs = [
        faq_record("a", "How do I return an item?", "Open the order page and click Return."),
        faq_record("b", "Ｈｏｗ do I  return an item?", "open the order page and\nclick return."),
        faq_record("c", "Where is my parcel?", "Track it on the order page."),
    ]

    kept, clusters = dedupe(convs, DedupeSettings())

    assert ids(kept) == ["a", "c"]
    assert [(c.kept, c.removed, c.kind) for c in clusters] == [("a", ["b"], "exact")]


def test_a_chinese_near_duplicate_with_one_character_changed_is_found():
    convs = [
        faq_record("a", "退货期限是多少天？", RETURNS),
        faq_record("b", "运费怎么算？", SHIPPING),
        faq_record("c", "退货期限是多少天？", RETURNS.replace("75", "76")),
        faq_record("d", "退货期限是多少天？", RETURNS.replace("买家", "卖家")),
    ]

    kept, clusters = dedupe(convs)

    assert ids(kept) == ["a", "b"]
    assert [(c.kept, c.removed, c.kind) for c in clusters] == [("a", ["c", "d"], "near")]


def test_different_records_sharing_a_template_are_not_merged():
    convs = [
        faq_record("a", "退货期限是多少天？", RETURNS),
        faq_record(
            "b",
            "换货期限是多少天？",
            "换货期限是自签收之日起15天内，仅限尺码或颜色不符，需联系客服获取换货单号后寄回。",
        ),
        faq_record(
            "c", "What is the return window?", "You can return items within 30 days of delivery."
        ),
        faq_record(
            "d",
            "What is the exchange window?",
            "Exchanges are possible within 15 days for size issues.",
        ),
    ]

    kept, clusters = dedupe(convs)

    assert ids(kept) == ["a", "b", "c", "d"] and clusters == []


def test_near_can_be_switched_off():
    convs = [faq_record("a", "Q", RETURNS), faq_record("b", "Q", RETURNS.replace("75", "76"))]

    kept, _ = dedupe(convs, DedupeSettings(near=False))

    assert ids(kept) == ["a", "b"]


def test_kept_records_keep_input_order_and_the_first_of_a_cluster_wins():
    convs = [
        faq_record("z", "运费怎么算？", SHIPPING),
        faq_record("y", "退货期限是多少天？", RETURNS.replace("75", "76")),
        faq_record("x", "退货期限是多少天？", RETURNS),
    ]

    kept, clusters = dedupe(convs)

    assert ids(kept) == ["z", "y"]
    assert clusters[0].kept == "y" and clusters[0].removed == ["x"]


def test_lsh_bands_propose_pairs_at_the_threshold():
    bands, rows = lsh_bands(0.8, 64)

    assert bands * rows <= 64
    assert 1 - (1 - 0.8**rows) ** bands >= 0.99


def test_signatures_do_not_depend_on_pythons_hash_seed():
    code = (
        "from shoptalk.data.dedupe import DedupeSettings, minhash;"
        "print(minhash(['退货期限 return window'], DedupeSettings())[0, :8].tolist())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == str(
        minhash(["退货期限 return window"], DedupeSettings())[0, :8].tolist()
    )


def many_records(n: int) -> list[Conversation]:
    return [
        faq_record(
            f"r{i}",
            f"Question number {i} about topic {i * 7919 % 1000}?",
            f"Answer {i}: " + "abcdefghij"[i % 10] * 20 + f" item {i * 31}",
        )
        for i in range(n)
    ]


def test_the_split_keeps_a_near_duplicate_pair_on_one_side():
    convs = many_records(60) + [
        faq_record("dup-1", "退货期限是多少天？", RETURNS),
        faq_record("dup-2", "退货期限是多少天？", RETURNS.replace("75", "76")),
        faq_record(
            "dup-3", "退货期限是多少天？", RETURNS.replace("75", "76")
        ),  # exact copy of dup-2
    ]
    for seed in range(10):
        splits = leakage_free_split(convs, {"train": 0.5, "test": 0.5}, seed, DedupeSettings())

        sides = {name for name, part in splits.items() for c in part if c.id.startswith("dup")}
        assert len(sides) == 1
        assert sorted(c.id for part in splits.values() for c in part) == sorted(ids(convs))


def test_the_split_follows_the_ratios_and_the_seed():
    convs = many_records(200)
    ratios = {"train": 0.8, "val": 0.1, "test": 0.1}

    splits = leakage_free_split(convs, ratios, seed=3)

    assert {k: len(v) for k, v in splits.items()} == {"train": 160, "val": 20, "test": 20}
    assert splits == leakage_free_split(convs, ratios, seed=3)
    assert splits != leakage_free_split(convs, ratios, seed=4)
    order = {c.id: i for i, c in enumerate(convs)}
    assert all(
        [order[c.id] for c in part] == sorted(order[c.id] for c in part) for part in splits.values()
    )


def test_bad_ratios_are_a_config_error():
    with pytest.raises(ConfigError, match="ratios"):
        leakage_free_split(many_records(3), {"train": -1.0}, seed=0)
