"""OpenAI's graders run locally: templates are lookups, metrics hold for English and Chinese."""

from __future__ import annotations

import pytest

from shoptalk.eval import graders

ITEM = {"item": {"q": "退货？", "ref": "四十七天", "nested": {"code": "KX-220"}},
        "sample": {"output_text": "退货期限是四十七天。"}}  # fmt: skip


def check(operation: str, text: str, reference: str) -> bool:
    grader = graders.StringCheck(
        type="string_check", name="s", input=text, reference=reference, operation=operation
    )
    return graders.string_check(grader, ITEM).passed


def test_templates_render_item_sample_and_nested_fields_and_nothing_else():
    assert (
        graders.render("{{ item.ref }}/{{sample.output_text}}", ITEM)
        == "四十七天/退货期限是四十七天。"
    )
    assert graders.render("{{item.nested.code}} {{item.nested}}", ITEM) == (
        'KX-220 {"code": "KX-220"}'
    )
    with pytest.raises(graders.GraderError, match="no such field"):
        graders.render("{{item.missing}}", ITEM)
    for template in ("{{item.__class__.__mro__}}x", "{{ 7*7 }}", "{{item['q']}}", "{{os.system}}"):
        with pytest.raises(graders.GraderError):
            graders.check_template(template, "input", {"q", "ref"}, True)
    with pytest.raises(graders.GraderError, match="names no field of item_schema"):
        graders.check_template("{{item.answer}}", "input", {"q", "ref"}, True)
    with pytest.raises(graders.GraderError, match="sample fields are none here"):
        graders.check_template("{{sample.output_text}}", "messages", {"q"}, False)


def test_string_check_operations_with_chinese_and_full_width_text():
    assert check("eq", "{{item.ref}}", "四十七天") and not check("eq", "{{item.ref}}", "四十七")
    assert check("ne", "{{item.ref}}", "四十七") and not check("ne", "四十七天", "{{item.ref}}")
    assert check("like", "{{sample.output_text}}", "{{item.ref}}")
    assert not check("like", "Code KX-220", "kx-220") and check("ilike", "Code KX-220", "kx-220")
    assert check("ilike", "型号 ＫＸ－２２０", "kx-220")  # full width folds to ASCII


def test_similarity_metrics_are_per_character_for_chinese():
    assert graders.similarity("rouge_1", "四十七天", "四十七天") == 1.0
    assert graders.similarity("rouge_2", "四十七天", "七天四十") == pytest.approx(2 / 3)
    assert graders.similarity("gleu", "a b c d", "a b c d") == 1.0
    assert graders.similarity("fuzzy_match", "四十七天", "四十八天") == pytest.approx(0.75)
    assert graders.similarity("bleu", "退货期限是四十七天", "退货期限是四十七天") == pytest.approx(
        1.0
    )
    assert graders.similarity("rouge_l", "", "") == 1.0
    assert graders.cosine([1.0, 0.0], [1.0, 1.0]) == pytest.approx(2**-0.5)
    with pytest.raises(graders.GraderError):
        graders.similarity("cosine", "a", "b")


def model_grader(kind: str, **fields):
    messages = [{"role": "user", "content": "{{sample.output_text}} vs {{item.ref}}"}]
    return (graders.ScoreModel if kind == "score_model" else graders.LabelModel)(
        type=kind, name="j", model="judge", input=messages, **fields
    )


def test_model_graders_render_their_messages_and_read_the_judges_reply():
    score = model_grader("score_model", range=[0, 10], pass_threshold=7)
    messages = graders.model_messages(score, ITEM)
    assert messages[0]["content"] == "退货期限是四十七天。 vs 四十七天"
    assert "from 0 to 10" in messages[-1]["content"]
    assert graders.model_result(score, '{"result": 8, "steps": "ok"}').passed
    assert graders.model_result(score, 'noise {"result": "12"}').score == 10  # clamped
    assert not graders.model_result(score, '{"result": 3}').passed
    with pytest.raises(graders.GraderError, match="no score"):
        graders.model_result(score, "I cannot say")
    label = model_grader("label_model", labels=["正确", "错误"], passing_labels=["正确"])
    assert graders.model_result(label, '{"result": "正确"}').passed
    assert not graders.model_result(label, "错误").passed
    with pytest.raises(graders.GraderError, match="names no label"):
        graders.model_result(label, "正确 还是 错误")


def test_item_schemas_name_the_bad_key_and_items_the_bad_field():
    schema = {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": ["integer", "null"]}},
              "required": ["q"]}  # fmt: skip
    assert graders.item_fields(schema) == {"q", "n"}
    with pytest.raises(graders.GraderError) as caught:
        graders.item_fields({"type": "object", "properties": {"q": {"type": "text"}}})
    assert caught.value.where == "item_schema.properties.q.type"
    with pytest.raises(graders.GraderError) as caught:
        graders.item_fields({"type": "object", "properties": {}, "required": ["q"]})
    assert caught.value.where == "item_schema.required"
    assert graders.item_problem(schema, {"q": "问", "n": None}) is None
    assert graders.item_problem(schema, {"n": 1}) == "q: required by item_schema, missing"
    assert (
        graders.item_problem(schema, {"q": "x", "n": True})
        == "n: expected integer or null, got bool"
    )
