"""The scorecard as one self-contained HTML page: `.shoptalk/evals/<run-id>/report.html`.

No external CSS, JavaScript or fonts: the page opens offline and can be mailed
as one file. Every text from the scorecard is escaped; answers highlight the
`must_include` facts they contain, matched the way the metrics match them.
"""

from __future__ import annotations

import unicodedata
from html import escape
from pathlib import Path

from shoptalk.artifacts import write_atomic
from shoptalk.eval.metrics import normalize
from shoptalk.eval.scorecard import LOWER_IS_BETTER, QuestionResult, Scorecard, SuiteScores

# Set by the LLM judge (eval/judge.py) when one is configured; the column is shown then.
JUDGE_FIELD = "judge_verdict"

_CSS = """
body{font:14px/1.45 system-ui,"Noto Sans CJK SC","PingFang SC","Microsoft YaHei","WenQuanYi Micro Hei",sans-serif;margin:2rem auto;max-width:1400px;padding:0 1rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}.meta{color:#555}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ddd;padding:4px 8px;
vertical-align:top;text-align:left}td.n{text-align:right;white-space:nowrap}
#questions th{cursor:pointer;background:#f4f4f4;position:sticky;top:0}
#questions td{max-width:28rem;white-space:pre-wrap}mark{background:#ffe27a}
.up{color:#17803d}.down{color:#b42318}.suite{display:flex;gap:2rem;flex-wrap:wrap;align-items:flex-start}
"""

_JS = """
const t=document.getElementById('questions'),b=t.tBodies[0];
t.querySelectorAll('th').forEach((th,i)=>th.addEventListener('click',()=>{
 const asc=th.dataset.dir!=='asc';t.querySelectorAll('th').forEach(h=>delete h.dataset.dir);
 th.dataset.dir=asc?'asc':'desc';const num=th.dataset.type==='num';
 const key=r=>{const c=r.cells[i];return num?parseFloat(c.dataset.v):c.textContent};
 [...b.rows].sort((x,y)=>{const p=key(x),q=key(y);return (num?p-q:p.localeCompare(q))*(asc?1:-1)})
  .forEach(r=>b.appendChild(r));}));
document.getElementById('suite-filter').addEventListener('change',e=>{
 for(const r of b.rows)r.hidden=e.target.value!==''&&r.dataset.suite!==e.target.value;});
"""

_BAR_W, _ROW_H, _LABEL_W = 260, 34, 130


def _cls(
    value: float, low: float | None = None, high: float | None = None, metric: str = ""
) -> str:
    # Colour a change only when it is real: the 95% interval excludes zero; a rise of a
    # metric where lower is better (false refusals, unsupported claims) is a loss.
    low, high = (value, value) if low is None else (low, high)
    if metric in LOWER_IS_BETTER:
        low, high = -high, -low
    return "up" if low > 0 else "down" if high < 0 else ""


def _chart(scores: SuiteScores, labels: list[str]) -> str:
    """Horizontal grouped bars, base or A (grey) over tuned or B (blue), the change beside."""
    a, b = labels
    metrics = list(scores.base)
    height = _ROW_H * len(metrics) + 24
    width = _LABEL_W + _BAR_W + 230
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" font-size="12"><title>{escape(a)} vs {escape(b)}</title>'
    ]
    for i, metric in enumerate(metrics):
        y = i * _ROW_H + 4
        base, tuned = scores.base[metric], scores.tuned[metric]
        mean, low, high = scores.diff[metric]
        parts.append(f'<text x="0" y="{y + 17}">{escape(metric)}</text>')
        for j, (value, colour) in enumerate(((base, "#9aa4b2"), (tuned, "#2f6fdb"))):
            w = max(0.0, min(1.0, value)) * _BAR_W
            yy = y + j * 14
            parts.append(
                f'<rect x="{_LABEL_W}" y="{yy}" width="{w:.1f}" height="12" fill="{colour}"/>'
                f'<text x="{_LABEL_W + w + 4:.1f}" y="{yy + 10}">{value:.2f}</text>'
            )
        fill = {"up": "#17803d", "down": "#b42318"}.get(_cls(mean, low, high, metric), "#222")
        parts.append(
            f'<text x="{_LABEL_W + _BAR_W + 40}" y="{y + 17}" fill="{fill}">'
            f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]</text>"
        )
    y = _ROW_H * len(metrics) + 18
    x = _LABEL_W + 34 + 7 * len(a)  # past the first label, at ~7 px a character
    parts.append(
        f'<rect x="{_LABEL_W}" y="{y - 9}" width="10" height="10" fill="#9aa4b2"/>'
        f'<text x="{_LABEL_W + 14}" y="{y}">{escape(a)}</text>'
        f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="#2f6fdb"/>'
        f'<text x="{x + 14}" y="{y}">{escape(b)}</text>'
        f'<text x="{_LABEL_W + _BAR_W + 40}" y="{y}">change [95% interval]</text></svg>'
    )
    return "".join(parts)


def _numbers(scores: SuiteScores, labels: list[str]) -> str:
    rows = []
    for metric in scores.base:
        mean, low, high = scores.diff[metric]
        rows.append(
            f"<tr><td>{escape(metric)}</td><td class=n>{scores.base[metric]:.3f}</td>"
            f"<td class=n>{scores.tuned[metric]:.3f}</td>"
            f'<td class="n {_cls(mean, low, high, metric)}">{mean:+.3f} [{low:+.3f}, {high:+.3f}]</td></tr>'
        )
    a, b = (escape(label) for label in labels)
    head = f"<tr><th>metric</th><th>{a}</th><th>{b}</th><th>change [95% interval]</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _folded(text: str) -> tuple[str, list[tuple[int, int]]]:
    """`normalize(text)` built piece by piece, with the raw span each folded char comes from.

    A piece is a character with its combining marks, so NFKC composes "e" + accent
    the way it does on the whole text. Whitespace folds to nothing, so it has no span.
    """
    pieces: list[tuple[int, int]] = []
    for i, ch in enumerate(text):
        if pieces and unicodedata.combining(ch):
            pieces[-1] = (pieces[-1][0], i + 1)
        else:
            pieces.append((i, i + 1))
    folded, origin = [], []
    for start, end in pieces:
        piece = normalize(text[start:end])
        folded.append(piece)
        origin.extend([(start, end)] * len(piece))
    return "".join(folded), origin


def find_spans(answer: str, keys: list[str]) -> list[tuple[int, int]]:
    """Raw-text spans of `answer` that normalize to one of `keys`, merged where they overlap."""
    folded, origin = _folded(answer)
    spans = []
    for key in keys:
        needle = normalize(key)
        at = folded.find(needle) if needle else -1
        while at >= 0:
            spans.append((origin[at][0], origin[at + len(needle) - 1][1]))
            at = folded.find(needle, at + 1)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(answer: str, keys: list[str]) -> str:
    """Escaped `answer` with each found key wrapped in <mark>."""
    out, pos = [], 0
    for start, end in find_spans(answer, keys):
        out.append(escape(answer[pos:start]) + f"<mark>{escape(answer[start:end])}</mark>")
        pos = end
    return "".join(out) + escape(answer[pos:])


def _question_row(q: QuestionResult, judged: bool) -> str:
    change = q.tuned_score - q.base_score
    cells = [
        escape(q.suite),
        escape(q.prompt),
        escape(q.reference or ""),
        escape(", ".join(q.must_include)),
        highlight(q.base_answer, q.must_include),
        highlight(q.tuned_answer, q.must_include),
    ]
    row = "".join(f"<td>{c}</td>" for c in cells)
    row += f'<td class=n data-v="{q.base_score:.6f}">{q.base_score:.2f}</td>'
    row += f'<td class=n data-v="{q.tuned_score:.6f}">{q.tuned_score:.2f}</td>'
    row += f'<td class="n {_cls(change)}" data-v="{change:.6f}">{change:+.2f}</td>'
    if judged:
        verdict = getattr(q, JUDGE_FIELD, None)
        row += f"<td>{escape('' if verdict is None else str(verdict))}</td>"
    return f'<tr data-suite="{escape(q.suite)}">{row}</tr>'


def _questions(card: Scorecard) -> str:
    judged = any(getattr(q, JUDGE_FIELD, None) is not None for q in card.questions)
    a, b = card.labels
    names = ["suite", "question", "reference", "must_include", f"{a} answer", f"{b} answer"]
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    head += f'<th data-type="num">{escape(a)}</th><th data-type="num">{escape(b)}</th>'
    head += '<th data-type="num" data-dir="asc">change</th>'  # the order rows come in
    head += "<th>judge</th>" if judged else ""
    # Biggest regressions first, biggest wins last; stable, so ties keep suite order.
    ordered = sorted(card.questions, key=lambda q: q.tuned_score - q.base_score)
    body = "".join(_question_row(q, judged) for q in ordered)
    options = "".join(f'<option value="{escape(s)}">{escape(s)}</option>' for s in card.suites)
    return (
        f'<h2>Questions</h2><label>suite <select id="suite-filter"><option value="">all</option>'
        f"{options}</select></label> <span class=meta>click a column header to sort</span>"
        f'<table id="questions"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _header(card: Scorecard) -> str:
    facts = [("run", card.run_id), ("base model", card.base_model), ("created", card.created)]
    if card.labels != ["base", "tuned"]:
        facts.insert(1, ("compared", f"{card.labels[0]} (A) vs {card.labels[1]} (B)"))
    facts += [(k.replace("_", " "), f"{v:g}") for k, v in card.timing.items()]
    items = " · ".join(f"{escape(k)}: <b>{escape(v)}</b>" for k, v in facts)
    not_run = "".join(
        f"<p class=meta>{escape(variant)}: not run — {escape(why)}</p>"
        for variant, why in card.not_run.items()
    )
    return f"<h1>Scorecard: {escape(card.run_id)}</h1><p class=meta>{items}</p>{not_run}"


def _gate(card: Scorecard) -> str:
    """The gate's verdict and, per rule, the numbers it judged."""
    if card.gate is None:
        return ""
    verdict = "passed" if card.gate.passed else "FAILED: the tuned model is not promoted"
    rows = []
    for check in card.gate.checks:
        numbers = ["", "", ""]
        if check.base is not None and check.tuned is not None:
            numbers[:2] = [f"{check.base:.3f}", f"{check.tuned:.3f}"]
        if check.change:
            mean, low, high = check.change
            numbers[2] = f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"
        why = "; ".join(check.failures) or check.note
        cls = {"passed": "up", "failed": "down"}.get(check.status, "")
        cells = "".join(f"<td class=n>{escape(n)}</td>" for n in numbers)
        rows.append(
            f"<tr><td class={cls or 'meta'}>{escape(check.status)}</td><td>{escape(check.rule)}"
            f"</td>{cells}<td>{escape(why)}</td></tr>"
        )
    head = "<tr><th></th><th>rule</th><th>base</th><th>tuned</th><th>change [95% interval]</th><th></th></tr>"
    return (
        f"<h2>Gate: {escape(verdict)}</h2><p class=meta>eval.gate in shoptalk.yaml</p>"
        f"<table>{head}{''.join(rows)}</table>"
    )


def _modes(card: Scorecard) -> str:
    """Each mode's score on the same questions, and the one eval.promote serves."""
    if not card.modes:
        return ""
    rows = "".join(
        f"<tr><td>{'<b>' + escape(m) + '</b> (served)' if m == card.mode else escape(m)}</td>"
        f"<td class=n>{v:.3f}</td></tr>"
        for m, v in card.modes.items()
    )
    served = f"served: <b>{escape(card.mode)}</b> — {escape(card.mode_reason)}" if card.mode else ""
    return (
        "<h2>Modes</h2><p class=meta>mean of each question's score (key-fact recall, refusal, "
        f"style) on the questions every mode answered · {served}</p>"
        f"<table><tr><th>mode</th><th>score</th></tr>{rows}</table>"
    )


def _abstention(card: Scorecard) -> str:
    """Per mode: unanswerable questions refused (want high), answerable ones refused (want low)."""
    if not card.abstention:
        return ""

    def cell(rates: dict[str, float], rate: str, n: str) -> str:
        if rate not in rates:
            return "<td class=n>—</td>"
        return f"<td class=n>{rates[rate]:.3f} <span class=meta>(n={int(rates[n])})</span></td>"

    rows = "".join(
        f"<tr><td>{escape(mode)}</td>{cell(r, 'refusal', 'unanswerable')}"
        f"{cell(r, 'false_refusal', 'answerable')}</tr>"
        for mode, r in card.abstention.items()
    )
    return (
        "<h2>Abstention</h2><p class=meta>share of the unanswerable suites' questions refused, "
        "and of the answerable (domain) suites' questions refused</p><table><tr><th>mode</th>"
        "<th>refusal on unanswerable</th><th>answerable questions refused</th></tr>"
        f"{rows}</table>"
    )


def render_report(card: Scorecard, extra: str = "") -> str:
    """The whole report page as one HTML string; `extra` (HTML) goes before the questions."""
    sections = [
        f"<h2>{escape(name)} <span class=meta>({escape(s.kind)}, {s.n} questions)</span></h2>"
        f"<div class=suite>{_chart(s, card.labels)}{_numbers(s, card.labels)}</div>"
        for name, s in card.suites.items()
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>shoptalk scorecard {escape(card.run_id)}</title><style>{_CSS}</style></head>"
        f"<body>{_header(card)}{_modes(card)}{_abstention(card)}{_gate(card)}{''.join(sections)}{extra}{_questions(card)}<script>{_JS}</script>"
        "</body></html>\n"
    )


def write_report(card: Scorecard, path: Path, extra: str = "") -> None:
    """Write the report atomically (temp file + rename) next to scorecard.json."""
    write_atomic(Path(path), render_report(card, extra))
