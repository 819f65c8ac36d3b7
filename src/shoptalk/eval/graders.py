"""OpenAI's eval graders, run locally: `string_check`, `text_similarity`, `score_model`, `label_model`.

A grader's `input`, `reference` and message texts are templates: `{{item.field}}`
(a field of the data source's item, dotted for nested objects) and
`{{sample.output_text}}` (the model's answer). Rendering is a lookup, never code:
anything else between braces is an error when the eval is created.

Model graders need a model's reply; this module builds their messages
(`model_messages`) and reads the reply (`model_result`); whoever serves the
model asks it. Text metrics reuse `eval.metrics`, so Chinese is tokenized per
character everywhere (BLEU with sacrebleu's `zh` tokenizer).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from shoptalk.errors import ShoptalkError
from shoptalk.eval.metrics import bleu, normalize, rouge_l, tokenize

_REFERENCE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_PATH = re.compile(r"(item|sample)(\.[A-Za-z_][\w-]*)+")
SAMPLE_FIELDS = {"output_text", "output_json", "choices"}
Text = Annotated[str, Field(max_length=20_000)]


class GraderError(ShoptalkError):
    """A grader definition or template that cannot run; `where` names the field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where, self.detail = where, message


class StringCheck(BaseModel, extra="allow"):
    type: Literal["string_check"]
    name: Text
    input: Text
    reference: Text
    operation: Literal["eq", "ne", "like", "ilike"]


class TextSimilarity(BaseModel, extra="allow"):
    type: Literal["text_similarity"]
    name: Text
    input: Text
    reference: Text
    evaluation_metric: Literal[
        "cosine",
        "fuzzy_match",
        "bleu",
        "gleu",
        "rouge_1",
        "rouge_2",
        "rouge_3",
        "rouge_4",
        "rouge_5",
        "rouge_l",
    ]
    pass_threshold: float = Field(ge=0, le=1)


class Message(BaseModel, extra="allow"):
    role: Literal["user", "assistant", "system", "developer"]
    content: Text | list[dict[str, Any]]
    type: Literal["message"] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content)


class SamplingParams(BaseModel, extra="allow"):
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    max_completions_tokens: int | None = Field(None, ge=1)


class ScoreModel(BaseModel, extra="allow"):
    type: Literal["score_model"]
    name: Text
    model: Text
    input: list[Message] = Field(min_length=1, max_length=50)
    range: list[float] = Field([0.0, 1.0], min_length=2, max_length=2)
    pass_threshold: float | None = None
    sampling_params: SamplingParams | None = None


class LabelModel(BaseModel, extra="allow"):
    type: Literal["label_model"]
    name: Text
    model: Text
    input: list[Message] = Field(min_length=1, max_length=50)
    labels: list[Text] = Field(min_length=1, max_length=50)
    passing_labels: list[Text] = Field(min_length=1, max_length=50)
    sampling_params: SamplingParams | None = None


Grader = Annotated[
    StringCheck | TextSimilarity | ScoreModel | LabelModel, Field(discriminator="type")
]
ModelGrader = ScoreModel | LabelModel


class GraderResult(BaseModel):
    """One grader's verdict on one item, as OpenAI's output item lists it."""

    name: str
    type: str
    score: float
    passed: bool
    sample: dict[str, Any] | None = None


# --- templates -------------------------------------------------------------------------


def references(template: str) -> list[str]:
    """The `item.x` / `sample.x` paths a template names."""
    return [m.group(1) for m in _REFERENCE.finditer(template)]


def check_template(
    template: str, where: str, item_fields: set[str] | None, with_sample: bool
) -> None:
    """Raise GraderError unless every `{{...}}` is an item field of the schema or a sample field."""
    for path in references(template):
        if not _PATH.fullmatch(path):
            raise GraderError(where, f"'{{{{{path}}}}}' is not an item.FIELD or sample.FIELD")
        namespace, field = path.split(".")[:2]
        if namespace == "sample" and (not with_sample or field not in SAMPLE_FIELDS):
            allowed = ", ".join(sorted(SAMPLE_FIELDS)) if with_sample else "none here"
            raise GraderError(where, f"'{{{{{path}}}}}': sample fields are {allowed}")
        if namespace == "item" and item_fields is not None and field not in item_fields:
            known = ", ".join(sorted(item_fields)) or "none"
            raise GraderError(where, f"'{{{{{path}}}}}' names no field of item_schema ({known})")


def render(template: str, namespaces: dict[str, Any]) -> str:
    """The template with each `{{ns.a.b}}` replaced by that value (objects as JSON)."""

    def value(match: re.Match) -> str:
        found: Any = namespaces
        for part in match.group(1).split("."):
            if not isinstance(found, dict) or part not in found:
                raise GraderError(match.group(0), "the item or sample has no such field")
            found = found[part]
        if isinstance(found, str):
            return found
        return json.dumps(found, ensure_ascii=False)

    return _REFERENCE.sub(value, template)


def grader_templates(grader: Any) -> list[tuple[str, str]]:
    """(field path, template) of every text a grader renders."""
    if isinstance(grader, ScoreModel | LabelModel):
        return [(f"input.{i}.content", m.text()) for i, m in enumerate(grader.input)]
    return [("input", grader.input), ("reference", grader.reference)]


# --- model-free graders ----------------------------------------------------------------


def string_check(grader: StringCheck, namespaces: dict[str, Any]) -> GraderResult:
    text, reference = render(grader.input, namespaces), render(grader.reference, namespaces)
    if grader.operation == "eq":
        passed = text == reference
    elif grader.operation == "ne":
        passed = text != reference
    elif grader.operation == "like":
        passed = _nfkc(reference) in _nfkc(text)
    else:  # ilike: contains, case and width folded (so full-width Chinese text matches)
        passed = normalize(reference) in normalize(text)
    return GraderResult(name=grader.name, type=grader.type, score=float(passed), passed=passed)


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def similarity(metric: str, text: str, reference: str) -> float:
    """A model-free text similarity in [0, 1]; cosine is the caller's (it needs embeddings)."""
    if metric == "fuzzy_match":
        return difflib.SequenceMatcher(None, _nfkc(text), _nfkc(reference), autojunk=False).ratio()
    if metric == "bleu":
        return bleu(text, reference)
    if metric == "gleu":
        return gleu(tokenize(text), tokenize(reference))
    if metric == "rouge_l":
        return rouge_l(text, reference)
    if metric.startswith("rouge_"):
        return rouge_n(tokenize(text), tokenize(reference), int(metric.removeprefix("rouge_")))
    raise GraderError("evaluation_metric", f"{metric!r} needs embeddings (cosine) or is unknown")


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(text: Sequence[str], reference: Sequence[str], n: int) -> float:
    """ROUGE-N F1 over n-grams of `metrics.tokenize` tokens (a CJK character is a token)."""
    got, want = _ngrams(text, n), _ngrams(reference, n)
    overlap = sum((got & want).values())
    if not overlap:
        return float(not got and not want)
    precision, recall = overlap / sum(got.values()), overlap / sum(want.values())
    return 2 * precision * recall / (precision + recall)


def gleu(text: Sequence[str], reference: Sequence[str], max_n: int = 4) -> float:
    """Sentence GLEU (Wu et al. 2016): min of precision and recall over all 1..4-grams."""
    got, want = Counter(), Counter()
    for n in range(1, max_n + 1):
        got.update(_ngrams(text, n))
        want.update(_ngrams(reference, n))
    if not got or not want:
        return float(not got and not want)
    overlap = sum((got & want).values())
    return min(overlap / sum(got.values()), overlap / sum(want.values()))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def similarity_result(grader: TextSimilarity, score: float) -> GraderResult:
    score = round(score, 6)
    passed = score >= grader.pass_threshold
    return GraderResult(name=grader.name, type=grader.type, score=score, passed=passed)


# --- model graders ---------------------------------------------------------------------

SCORE_INSTRUCTIONS = (
    'Reply with JSON only: {{"result": <a number from {low:g} to {high:g}>, '
    '"steps": "<one sentence of reasoning>"}}'
)
LABEL_INSTRUCTIONS = 'Reply with JSON only: {{"result": "<one of: {labels}>"}}'
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def model_messages(grader: ModelGrader, namespaces: dict[str, Any]) -> list[dict[str, str]]:
    """The grader's messages rendered for one item, then how to answer (JSON)."""
    messages = [
        {
            "role": "system" if m.role == "developer" else m.role,
            "content": render(m.text(), namespaces),
        }
        for m in grader.input
    ]
    if isinstance(grader, ScoreModel):
        low, high = grader.range
        rule = SCORE_INSTRUCTIONS.format(low=low, high=high)
    else:
        rule = LABEL_INSTRUCTIONS.format(labels=", ".join(grader.labels))
    return [*messages, {"role": "system", "content": rule}]


def model_result(grader: ModelGrader, reply: str) -> GraderResult:
    """The judge's reply read as a score or a label; an unreadable reply raises GraderError."""
    found = _reply_result(reply)
    if isinstance(grader, ScoreModel):
        low, high = grader.range
        number = _NUMBER.search(str(found)) if found is not None else None
        if number is None:
            raise GraderError(grader.name, f"the judge's reply has no score: {reply[:200]!r}")
        score = min(max(float(number.group(0)), low), high)
        threshold = grader.pass_threshold if grader.pass_threshold is not None else high
        passed = score >= threshold
        sample = {"output_text": reply}
        return GraderResult(
            name=grader.name, type=grader.type, score=score, passed=passed, sample=sample
        )
    label = _pick_label(str(found if found is not None else reply), grader.labels)
    if label is None:
        raise GraderError(grader.name, f"the judge's reply names no label: {reply[:200]!r}")
    passed = label in grader.passing_labels
    sample = {"output_text": reply, "label": label}
    return GraderResult(
        name=grader.name, type=grader.type, score=float(passed), passed=passed, sample=sample
    )


def _reply_result(reply: str) -> Any:
    """`result` of the first JSON object in the reply, else the whole reply."""
    try:
        parsed = json.loads(reply[reply.index("{") : reply.rindex("}") + 1])
        return parsed.get("result", reply) if isinstance(parsed, dict) else reply
    except ValueError:
        return reply


def _pick_label(text: str, labels: list[str]) -> str | None:
    """The label the text is, else the only label it contains (case and width folded)."""
    folded = normalize(text)
    exact = [label for label in labels if normalize(label) == folded]
    if exact:
        return exact[0]
    contained = [label for label in labels if normalize(label) in folded]
    return contained[0] if len(contained) == 1 else None


# --- item schemas ------------------------------------------------------------------------

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def item_fields(schema: dict[str, Any], where: str = "item_schema") -> set[str]:
    """The fields an item schema declares; GraderError naming the bad key otherwise.

    The subset of JSON Schema that eval definitions use: an object with
    `properties` (each with a known `type`) and `required` naming some of them.
    """
    if schema.get("type", "object") != "object":
        raise GraderError(f"{where}.type", f"expected 'object', got {schema.get('type')!r}")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise GraderError(f"{where}.properties", "expected an object of field schemas")
    for name, field in properties.items():
        kinds = field.get("type") if isinstance(field, dict) else None
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not kinds or any(k not in JSON_TYPES for k in kinds):
            raise GraderError(
                f"{where}.properties.{name}.type",
                f"expected one of {', '.join(JSON_TYPES)}, got {field!r}",
            )
    required = schema.get("required", [])
    missing = (
        [r for r in required if r not in properties] if isinstance(required, list) else [required]
    )
    if missing:
        raise GraderError(f"{where}.required", f"names no declared field: {missing}")
    return set(properties)


def item_problem(schema: dict[str, Any], item: Any) -> str | None:
    """Why `item` does not fit the schema (field and expected type), or None."""
    if not isinstance(item, dict):
        return f"expected an object, got {type(item).__name__}"
    for name in schema.get("required", []):
        if name not in item:
            return f"{name}: required by item_schema, missing"
    for name, field in schema.get("properties", {}).items():
        if name not in item:
            continue
        kinds = field["type"] if isinstance(field["type"], list) else [field["type"]]
        value = item[name]
        fits = any(
            isinstance(value, JSON_TYPES[k])
            and not (k in ("number", "integer") and isinstance(value, bool))
            for k in kinds
        )
        if not fits:
            return f"{name}: expected {' or '.join(kinds)}, got {type(value).__name__}"
    return None
