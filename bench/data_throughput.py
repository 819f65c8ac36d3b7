"""Throughput of data preparation: .venv/bin/python bench/data_throughput.py [--records 100000]

Generates synthetic FAQ-sized records (question ~12 words, answer ~30 words;
70% English, 30% Chinese; ~5% carry PII; ~5% planted exact duplicates and ~5%
near duplicates: one word or one character changed), writes them as a FAQ CSV
and a FAQ JSONL in a temporary folder, then times each stage:
ingest (`read_faq` of the CSV) -> clean -> redact -> dedupe (exact + near) ->
leakage-free split. The JSONL is read too, timed on its own line (not in the
total). Prints seconds per stage, records/s, peak RSS and how many planted
duplicates were found.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import tempfile
import time
from pathlib import Path

from shoptalk.data.clean import clean_conversations
from shoptalk.data.dedupe import dedupe, leakage_free_split
from shoptalk.data.faq import read_faq
from shoptalk.data.pii import redact_conversation
from shoptalk.records import Conversation, Message

WORDS = (
    "order return refund delivery shipping account password invoice payment card store "
    "warranty repair product price discount member points coupon size color stock week "
    "day month hour office branch manager team customer support phone email address city "
    "country parcel package box label tracking number status update cancel change exchange "
    "receipt tax fee cost free express standard international local policy rule contract "
    "service plan upgrade install setup device battery screen cable charger adapter manual "
    "guide video app website login profile settings language region holiday weekend morning "
    "evening deadline window period limit amount balance transfer bank credit debit cash "
    "check approve reject request form document copy original sign stamp seal scan upload "
    "download print send receive open close start finish wait call visit meet bring keep "
    "the a an of to in for on with by at from is are can will must should may our your their "
    "we you they it this that these within after before during until about please how what "
    "when where which who why do does long much many any every each some all new old next"
).split()
HANZI = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说"
    "产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使"
    "点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明"
    "看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料"
    "退货款订单发票保修快递运费会员积分优惠券客服电话邮箱地址门店营业时间周末节假日期限申请审核办理"
)


def english(rng: random.Random, n: int) -> str:
    words = rng.choices(WORDS, k=n)
    return " ".join(words).capitalize()


def chinese(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(HANZI, k=n))


def with_pii(rng: random.Random, text: str) -> str:
    pii = rng.choice(
        [
            f"email {rng.choice(WORDS)}.{rng.choice(WORDS)}@example.com",
            f"call 555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
            f"手机1{rng.choice('3589')}{rng.randint(10**8, 10**9 - 1)}",
            f"server 10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        ]
    )
    return f"{text} {pii}"


def record(rng: random.Random, i: int) -> Conversation:
    if rng.random() < 0.7:
        q, a = english(rng, 12) + "?", english(rng, 30) + "."
    else:
        q, a = chinese(rng, 20) + "？", chinese(rng, 60) + "。"
    if rng.random() < 0.05:
        a = with_pii(rng, a)
    messages = [Message(role="user", content=q), Message(role="assistant", content=a)]
    return Conversation(id=f"r{i}", messages=messages, source=f"faq.csv:{i + 2}", kind="faq")


def near_copy(rng: random.Random, conv: Conversation, i: int) -> Conversation:
    answer = conv.messages[1].content
    if answer.isascii():
        words = answer.split(" ")
        words[rng.randrange(len(words))] = rng.choice(WORDS)
        answer = " ".join(words)
    else:
        k = rng.randrange(len(answer) - 1)
        answer = answer[:k] + rng.choice(HANZI) + answer[k + 1 :]
    messages = [conv.messages[0], Message(role="assistant", content=answer)]
    return conv.model_copy(update={"id": f"r{i}", "messages": messages})


def exact_copy(conv: Conversation, i: int) -> Conversation:
    """Same text after normalization: case and spacing differ."""
    messages = [m.model_copy(update={"content": m.content.upper() + "  "}) for m in conv.messages]
    return conv.model_copy(update={"id": f"r{i}", "messages": messages})


def corpus(n: int, seed: int) -> tuple[list[Conversation], set[str], set[str]]:
    rng = random.Random(seed)
    convs: list[Conversation] = []
    exact_ids: set[str] = set()
    near_ids: set[str] = set()
    for i in range(n):
        roll = rng.random()
        if roll < 0.05 and convs:
            convs.append(exact_copy(rng.choice(convs), i))
            exact_ids.add(f"r{i}")
        elif roll < 0.10 and convs:
            convs.append(near_copy(rng, rng.choice(convs), i))
            near_ids.add(f"r{i}")
        else:
            convs.append(record(rng, i))
    return convs, exact_ids, near_ids


def write_faq_files(convs: list[Conversation], folder: Path) -> tuple[Path, Path]:
    """`faq.csv` (row i on line i + 2) and `faq.jsonl` (row i on line i + 1)."""
    pairs = [(c.messages[0].content, c.messages[1].content) for c in convs]
    csv_path, jsonl_path = folder / "faq.csv", folder / "faq.jsonl"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "answer"])
        writer.writerows(pairs)
    with jsonl_path.open("w", encoding="utf-8") as f:
        for q, a in pairs:
            f.write(json.dumps({"question": q, "answer": a}, ensure_ascii=False) + "\n")
    return csv_path, jsonl_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    generated, exact_ids, near_ids = corpus(args.records, args.seed)
    print(f"{len(generated)} records, {len(exact_ids)} planted exact, {len(near_ids)} planted near")
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path, jsonl_path = write_faq_files(generated, folder)
        mib = (csv_path.stat().st_size / 2**20, jsonl_path.stat().st_size / 2**20)
        print(f"faq.csv {mib[0]:.1f} MiB, faq.jsonl {mib[1]:.1f} MiB")
        del generated

        start = time.perf_counter()
        convs = read_faq(csv_path, folder)
        times["ingest"] = time.perf_counter() - start

        start = time.perf_counter()
        from_jsonl = read_faq(jsonl_path, folder)
        jsonl_seconds = time.perf_counter() - start
        assert len(from_jsonl) == len(convs), (len(from_jsonl), len(convs))
        del from_jsonl

    start = time.perf_counter()
    cleaned, dropped = clean_conversations(convs)
    times["clean"] = time.perf_counter() - start

    start = time.perf_counter()
    redacted = [redact_conversation(c)[0] for c in cleaned]
    times["redact"] = time.perf_counter() - start

    start = time.perf_counter()
    kept, clusters = dedupe(redacted)
    times["dedupe"] = time.perf_counter() - start

    start = time.perf_counter()
    splits = leakage_free_split(kept, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)
    times["split"] = time.perf_counter() - start

    total = sum(times.values())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Planted ids are generation order: row i of the CSV is on line i + 2.
    planted = {c.id: f"r{int(c.source.rsplit(':', 1)[1]) - 2}" for c in convs}
    removed = {(planted[rid], c.kind) for c in clusters for rid in c.removed}
    for stage, seconds in times.items():
        print(f"{stage:<8}{seconds:8.2f} s  {len(convs) / seconds:>10,.0f} records/s")
    print(f"{'total':<8}{total:8.2f} s  {len(convs) / total:>10,.0f} records/s")
    print(
        f"(ingest of the same rows as JSONL: {jsonl_seconds:.2f} s, "
        f"{len(convs) / jsonl_seconds:,.0f} records/s; not in the total)"
    )
    print(f"peak RSS {peak_mib:,.0f} MiB")
    print(f"dropped by clean: {len(dropped)}; kept after dedupe: {len(kept)}")
    print(
        f"planted exact found: {sum((r, 'exact') in removed for r in exact_ids)}/{len(exact_ids)}; "
        f"planted near found: {sum((r, 'near') in removed for r in near_ids)}/{len(near_ids)}; "
        f"removed as near: {sum(k == 'near' for _, k in removed)}"
    )
    print("split sizes: " + ", ".join(f"{k}={len(v)}" for k, v in splits.items()))


if __name__ == "__main__":
    main()
