import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from shoptalk.modeling.chat_format import IGNORE, encode_conversation, encode_text
from shoptalk.records import Conversation, Message
from shoptalk.train.loss import labelled_loss, model_batch
from shoptalk.train.packing import batches, collate, end_to_end, pack

QUESTIONS = [
    ("What is the claim window?", "The claim window is 47 days from delivery."),
    ("Who runs the Oslo depot?", "Ingrid Solberg runs the Oslo depot."),
    ("退货期限是多少天？", "退货期限是75天。"),
    ("Hello", "How can I help you today?"),
]


def conversations() -> list[Conversation]:
    return [
        Conversation(
            id=str(i),
            messages=[Message(role="user", content=q), Message(role="assistant", content=a)],
            source=f"faq.csv:{i + 2}",
            kind="faq",
        )
        for i, (q, a) in enumerate(QUESTIONS)
    ]


def test_loss_mask_covers_exactly_the_assistant_turn(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    example = encode_conversation(tokenizer, conversations()[0], "Be brief.")
    target = [
        t for t, label in zip(example.input_ids, example.labels, strict=False) if label != IGNORE
    ]
    assert tokenizer.decode(target) == "The claim window is 47 days from delivery.<|im_end|>\n"
    full = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, *conversations()[0].model_dump()["messages"]],
        tokenize=False,
    )
    assert tokenizer.decode(example.input_ids) == full


def test_packed_and_unpacked_loss_are_equal(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    examples = [encode_conversation(tokenizer, c, "Be brief.") for c in conversations()]

    rows = pack(examples, max_len=512)
    assert len(rows) == 1, "four short examples fit one row"
    with torch.no_grad():
        packed_sum, packed_n = labelled_loss(model, collate(rows, tokenizer.pad_token_id))
        single = [
            labelled_loss(model, collate(pack([e], 512), tokenizer.pad_token_id)) for e in examples
        ]
    assert packed_n == sum(n for _, n in single)
    torch.testing.assert_close(packed_sum, sum(s for s, _ in single), rtol=1e-5, atol=1e-4)


def test_rows_end_to_end_give_the_padded_loss_without_padding(tiny_model):
    """Text examples are labelled from their first token: packed, no example predicts the next."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    texts = [
        "The claim window is 47 days.",
        "Ingrid Solberg runs the Oslo depot.",
        "退货期限是75天。",
    ]
    examples = [encode_text(tokenizer, t) for t in texts]
    examples += [encode_conversation(tokenizer, c, "") for c in conversations()]
    rows = pack(examples, max_len=40)
    assert len(rows) > 1 and len({len(r.input_ids) for r in rows}) > 1
    flat = end_to_end(rows)
    total = sum(len(r.input_ids) for r in rows)
    assert flat["input_ids"].shape == (1, total)
    assert model_batch(model, rows, tokenizer.pad_token_id)["input_ids"].shape == (1, total)
    with torch.no_grad():
        flat_sum, flat_n = labelled_loss(model, flat)
        padded_sum, padded_n = labelled_loss(model, collate(rows, tokenizer.pad_token_id))
        single = [
            labelled_loss(model, collate(pack([e], 40), tokenizer.pad_token_id)) for e in examples
        ]
    assert flat_n == padded_n == sum(n for _, n in single)
    torch.testing.assert_close(flat_sum, padded_sum, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(flat_sum, sum(s for s, _ in single), rtol=1e-5, atol=1e-4)


def test_batches_are_seeded_and_cover_every_row(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    examples = [encode_conversation(tokenizer, c, "") for c in conversations()] * 5
    rows = pack(examples, max_len=64)
    first = batches(rows, tokens_per_step=128, max_len=64, seed=3)
    assert first == batches(rows, tokens_per_step=128, max_len=64, seed=3)
    assert sorted(id(r) for b in first for r in b) == sorted(id(r) for r in rows)
    assert all(len(b) <= 2 for b in first)
