"""General-ability retention: proof that fine-tuning made nothing else worse.

Two suites join the scorecard while `eval.retention` is on (the default), both
offline, both from files bundled in `shoptalk/eval/data/`:

- **retention** (kind "retention"): the base model answers the 220 general
  prompts of `general_prompts.jsonl` (half English, half Chinese: knowledge,
  writing, reasoning, how-to) once, greedily, up to 48 tokens. Both models then
  score those same answers token by token, with the project's system prompt and
  chat template, loss on the answer tokens only (as in training). Metric:

      log_likelihood   mean over prompts of the mean per-token log-likelihood of
                       the base's answer (nats; = -NLL). Higher is better, like
                       every scorecard metric, so its change (tuned - base) is
                       minus the NLL drift: a model that forgot how to talk in
                       general finds its own former answers less likely.

  Gate: `{suite: retention, metric: log_likelihood, max_drop: 0.1}` lets the
  per-token NLL rise by at most 0.1 nats. The per-prompt NLLs are written to
  `evals/<run-id>/retention.json`.
- **general_qa** (kind "domain"): `general_qa.jsonl`, general-knowledge
  questions with key facts ("中国的首都是哪里？" -> "北京"), scored like any
  domain suite (key_fact_recall, strict_accuracy).

The base's answers and its scores depend only on the base model, the prompts,
the system prompt and the device, so they are cached in
`<cache>/retention/<key>.json` (`SHOPTALK_CACHE` moves `<cache>`): after the
first run, retention costs one scoring pass of the tuned model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ValidationError

from shoptalk.artifacts import RunArtifact, write_json
from shoptalk.errors import SourceError
from shoptalk.eval.metrics import bootstrap_diff
from shoptalk.eval.questions import Suite, load_suite_file
from shoptalk.eval.scorecard import SuiteScores
from shoptalk.modeling.chat_format import encode_conversation, with_system
from shoptalk.modeling.load import cache_dir, model_identity
from shoptalk.modeling.score import example_losses
from shoptalk.records import Conversation, Message

if TYPE_CHECKING:
    from shoptalk.modeling.generate import Assistant
    from shoptalk.project import Project

log = logging.getLogger(__name__)

DATA = Path(__file__).parent / "data"
PROMPTS_FILE = DATA / "general_prompts.jsonl"
QA_FILE = DATA / "general_qa.jsonl"
SUITE = "retention"
QA_SUITE = "general_qa"
METRIC = "log_likelihood"
ANSWER_TOKENS = 48
CACHE_FORMAT = 1


class GeneralPrompt(BaseModel, extra="forbid"):
    prompt: str
    lang: Literal["en", "zh"]
    category: str


def load_prompts(path: Path = PROMPTS_FILE) -> list[GeneralPrompt]:
    """The general prompts, one JSON object a line."""
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            prompts.append(GeneralPrompt.model_validate_json(line))
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise SourceError(path, number, f"not a general prompt: {problem}") from None
    return prompts


def general_qa_suite() -> Suite:
    """The bundled general-knowledge questions as the domain suite 'general_qa'."""
    (suite,) = load_suite_file(QA_FILE)
    return suite


def with_general_qa(suites: list[Suite], enabled: bool) -> list[Suite]:
    """`suites` plus 'general_qa', unless disabled or a user suite already has that name."""
    if not enabled:
        return suites
    if any(s.name == QA_SUITE for s in suites):
        log.warning(
            "a question file is named %s; the bundled general QA suite is skipped", QA_SUITE
        )
        return suites
    return [*suites, general_qa_suite()]


# --- scoring answers ---------------------------------------------------------


def answer_nll(
    assistant: Assistant,
    prompts: list[str],
    answers: list[str],
    system_prompt: str,
    batch_size: int,
    phase: str | None = None,
) -> list[float]:
    """Mean per-token NLL of each answer to its prompt, as the model would be trained on it."""
    examples = [
        encode_conversation(
            assistant.tokenizer,
            Conversation(
                id=f"general-{i}",
                messages=[Message(role="user", content=p), Message(role="assistant", content=a)],
                source=f"{PROMPTS_FILE.name}:{i + 1}",
            ),
            system_prompt,
        )
        for i, (p, a) in enumerate(zip(prompts, answers, strict=True))
    ]
    scored = example_losses(assistant, examples, batch_size, phase)
    return [total / max(count, 1) for total, count in scored]


# --- the suite ----------------------------------------------------------------


def cache_key(model_paths: list[str], prompts_path: Path, system_prompt: str, device: str) -> str:
    h = hashlib.sha256(f"retention-cache={CACHE_FORMAT}".encode())
    for path in model_paths:
        h.update(model_identity(path).encode())
    h.update(hashlib.sha256(prompts_path.read_bytes()).digest())
    h.update(json.dumps([system_prompt, ANSWER_TOKENS, device]).encode())
    return h.hexdigest()[:20]


@dataclass
class RetentionCheck:
    """The 'retention' suite, measured inside `evaluate`'s base-then-tuned loop."""

    prompts: list[str]
    system_prompt: str
    batch_size: int
    key: str
    answers: list[str] = field(default_factory=list)
    nll: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    name: str = SUITE

    @classmethod
    def setup(
        cls,
        project: Project,
        base_path: str,
        prompts_path: Path = PROMPTS_FILE,
        reference: RunArtifact | None = None,
    ) -> RetentionCheck:
        """`reference`: the run whose answers the other model is measured on (default: the base)."""
        system_prompt = project.system_prompt
        # The configured device, not the resolved one: no torch import on a cache hit.
        device = project.config.train.device
        # A run's weights live in its final/ folder (with the base's, for an adapter).
        models = [base_path] if reference is None else [base_path, str(reference.final)]
        return cls(
            prompts=[p.prompt for p in load_prompts(prompts_path)],
            system_prompt=system_prompt,
            batch_size=project.config.eval.batch_size,
            key=cache_key(models, prompts_path, system_prompt, device),
        )

    @property
    def cache_file(self) -> Path:
        return cache_dir() / "retention" / f"{self.key}.json"

    def digest(self) -> str:
        """Changes whenever the measurement would (base model, prompts, system prompt, device)."""
        return self.key

    def measure(self, variant: str, assistant: Assistant) -> None:
        """Base: answer the prompts (or reuse the cache) and score; tuned: score the base's answers."""
        started = time.perf_counter()
        if variant == "base" and self._read_cache():
            log.info("retention: base answers and scores from %s", self.cache_file)
        elif variant == "base":
            from shoptalk.modeling.generate import answer

            conversations = [
                with_system([Message(role="user", content=p)], self.system_prompt)
                for p in self.prompts
            ]
            phase = "eval: retention answers (base)"
            self.answers = answer(assistant, conversations, ANSWER_TOKENS, self.batch_size, phase)
            self.nll["base"] = self._score(assistant, variant)
            self._write_cache()
        else:
            self.nll[variant] = self._score(assistant, variant)
        self.seconds += time.perf_counter() - started

    def _score(self, assistant: Assistant, variant: str) -> list[float]:
        phase = f"eval: retention likelihoods ({variant})"
        return answer_nll(
            assistant, self.prompts, self.answers, self.system_prompt, self.batch_size, phase
        )

    def _read_cache(self) -> bool:
        try:
            cached = json.loads(self.cache_file.read_text(encoding="utf-8"))
            answers, nll = cached["answers"], cached["base_nll"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if len(answers) != len(self.prompts) or len(nll) != len(self.prompts):
            return False
        self.answers, self.nll["base"] = answers, nll
        return True

    def _write_cache(self) -> None:
        write_json(
            self.cache_file,
            {"format": CACHE_FORMAT, "answers": self.answers, "base_nll": self.nll["base"]},
        )

    def scores(self) -> SuiteScores:
        base = [-x for x in self.nll["base"]]
        tuned = [-x for x in self.nll["tuned"]]
        return SuiteScores(
            n=len(self.prompts),
            kind="retention",
            base={METRIC: sum(base) / len(base)},
            tuned={METRIC: sum(tuned) / len(tuned)},
            diff={METRIC: list(bootstrap_diff(base, tuned))},
        )

    def details(self) -> dict:
        """Per prompt: the base's answer and both models' mean per-token NLL of it."""
        rows = zip(self.prompts, self.answers, self.nll["base"], self.nll["tuned"], strict=True)
        return {
            "metric": "mean per-token NLL of the base model's answer (nats)",
            "prompts": [
                {"prompt": p, "base_answer": a, "base_nll": round(b, 5), "tuned_nll": round(t, 5)}
                for p, a, b, t in rows
            ],
        }
