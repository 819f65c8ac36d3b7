"""The scorecard's retrieval modes show a refusal as `ask` and the API show it."""

from __future__ import annotations

from shoptalk.eval.grounded import UNSUPPORTED, Grounded, verified_replies
from shoptalk.rag.abstain import DEFAULT_RULE, Abstention
from shoptalk.rag.select import Passage
from shoptalk.rag.verify import not_found_message
from shoptalk.records import Chunk

OWN = "抱歉，我们的资料中没有这方面的信息。"


def test_refusals_are_scored_in_the_organizations_own_words():
    chunk = Chunk(id="c1", text="门店营业时间为9:00至21:00。", source="docs/门店.md")
    passages = [Passage(text=chunk.text, chunk=chunk, score=1.0)]
    abstention = Abstention(DEFAULT_RULE, {})
    refused = Grounded(
        "茶香打算什么时候上市？",
        passages,
        None,
        abstention,
        reply=not_found_message("茶香打算什么时候上市？", ["docs/门店.md"]),
    )
    asked = Grounded("门店几点关门？", passages, [{"role": "user", "content": "?"}], abstention)
    replies, flags = verified_replies([refused, asked], ["我没有找到。"], refusal=OWN)
    assert replies[0] == f"{OWN}（已查阅：docs/门店.md）"
    # The model said it found nothing: shown in the same words.
    assert replies[1].startswith(OWN)
    assert flags[UNSUPPORTED] == [0.0, 0.0]
