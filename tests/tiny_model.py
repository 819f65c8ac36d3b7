"""The tiny random chat model the tests build (never downloaded)."""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
CORPUS = [
    "What is the claim window? The claim window is 47 days from delivery.",
    "Who runs the Oslo depot? Ingrid Solberg runs the Oslo depot.",
    "Hello, how can I help you today? I don't have that information.",
    "退货期限是多少天？退货期限是75天。请问您需要什么帮助？",
    "system user assistant You are a helpful assistant.",
]


def build_tiny_model(folder: Path, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """A byte-level BPE tokenizer trained on a few sentences and a random Llama."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from shoptalk.modeling.chat_format import DEFAULT_CHAT_TEMPLATE

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|endoftext|>", pad_token="<pad>"
    )
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def qa_examples(tokenizer, pairs: list[tuple[str, str]], system: str = "You are X.") -> list:
    """(question, answer) pairs encoded as training encodes one-turn conversations."""
    from shoptalk.modeling.chat_format import encode_conversation
    from shoptalk.records import Conversation, Message

    turns = [
        [Message(role="user", content=q), Message(role="assistant", content=a)] for q, a in pairs
    ]
    return [
        encode_conversation(tokenizer, Conversation(id=str(i), messages=t, source="t"), system)
        for i, t in enumerate(turns)
    ]


def training_rows(examples: list) -> list:
    """The trainer's unpacked rows of `examples` (positions from 0)."""
    from shoptalk.train.packing import Row

    return [Row(e.input_ids, e.labels, list(range(len(e.input_ids)))) for e in examples]


def teach(
    base: Path,
    out: Path,
    pairs: list[tuple[str, str]],
    system_prompt: str,
    steps: int = 60,
    lr: float = 3e-2,
    until: float = 0.0,
) -> Path:
    """`base` trained on `pairs` (one full batch, AdamW), saved to `out` as a model folder.

    `until`: stop once the loss is below it (`steps` is then the most): how fast a random
    model memorizes differs between CPUs (their kernels round differently).
    """
    import torch

    from shoptalk.modeling.load import load_model, load_tokenizer
    from shoptalk.train.loss import labelled_loss
    from shoptalk.train.packing import collate

    tokenizer, model = load_tokenizer(str(base)), load_model(str(base), "cpu")
    rows = training_rows(qa_examples(tokenizer, pairs, system_prompt))
    batch = collate(rows, tokenizer.pad_token_id)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        total, count = labelled_loss(model, batch)
        if (total / count).item() < until:
            break
        (total / count).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_digit_model(folder: Path, tiny_model: Path, seed: int = 0) -> Path:
    """The tiny model with an output layer that writes digits whenever it can: every other
    token scores 0, the tokens holding a digit random scores (some always above 0)."""
    import re

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.config.tie_word_embeddings = False
    weight = torch.zeros_like(model.lm_head.weight)
    torch.manual_seed(seed)
    for token in range(len(tokenizer)):
        if re.search(r"\d", tokenizer.decode([token])):
            weight[token] = torch.randn(weight.shape[1]) * 10
    model.lm_head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    model.lm_head.weight = torch.nn.Parameter(weight)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
