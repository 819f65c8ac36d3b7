"""The CLI verbs a newcomer uses: init, build without question files, eval --json, ask."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from shoptalk.cli import app
from shoptalk.config import load_config

from projects import write_project

runner = CliRunner()


def test_init_writes_a_config_that_loads_and_never_overwrites(tmp_path):
    (tmp_path / "faq.csv").write_text("question,answer\nA?,B.\n")
    (tmp_path / "docs").mkdir()
    target = tmp_path / "assistant"
    result = runner.invoke(
        app,
        [
            "init",
            str(target),
            "--faq",
            str(tmp_path / "faq.csv"),
            "--docs",
            str(tmp_path / "docs"),
            "--name",
            "ACME",
        ],
    )
    assert result.exit_code == 0, result.output
    config = load_config(target)
    assert config.sources.faq == ["../faq.csv"] and config.sources.docs == ["../docs"]
    assert "ACME" in config.system_prompt
    again = runner.invoke(app, ["init", str(target), "--faq", str(tmp_path / "faq.csv")])
    assert again.exit_code == 2 and "already exists" in again.output


def test_without_question_files_a_heldout_faq_split_is_scored_and_never_trained(
    tmp_path, tiny_model
):
    project = write_project(tmp_path / "p", tiny_model, epochs=1)
    config = yaml.safe_load((project / "shoptalk.yaml").read_text())
    config["sources"]["questions"] = []
    config["data"]["holdout_ratio"] = 0.34
    (project / "shoptalk.yaml").write_text(yaml.safe_dump(config))

    result = runner.invoke(app, ["build", str(project)])
    assert result.exit_code == 0, result.output
    (dataset,) = (project / ".shoptalk" / "datasets").iterdir()
    held = [json.loads(line) for line in (dataset / "heldout.jsonl").read_text().splitlines()]
    trained = (dataset / "train.jsonl").read_text() + (dataset / "val.jsonl").read_text()
    assert len(held) == 2
    for row in held:
        answer = row["messages"][-1]["content"]
        assert answer not in trained, "a held-out answer leaked into training"

    printed = runner.invoke(app, ["eval", str(project), "--json"])
    assert printed.exit_code == 0, printed.output
    card = json.loads(printed.stdout)
    assert card["suites"]["heldout_faq"]["n"] == 2
    assert {"run_id", "base_model", "created", "suites"} <= set(card)


def test_ask_answers_with_the_tuned_and_the_base_model(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model, epochs=1)
    assert runner.invoke(app, ["build", str(project)]).exit_code == 0
    tuned = runner.invoke(
        app, ["ask", str(project), "What is the claim window?", "--max-new-tokens", "5"]
    )
    base = runner.invoke(
        app, ["ask", str(project), "What is the claim window?", "--base", "--max-new-tokens", "5"]
    )
    assert tuned.exit_code == 0 and base.exit_code == 0
    assert tuned.output.strip() and base.output.strip()
    # With the build's index, a question about the assistant is still answered by it, in
    # the system prompt's words (rag.persona), never "not in the documents".
    who = runner.invoke(app, ["ask", str(project), "Who are you?", "--max-new-tokens", "5"])
    assert who.exit_code == 0, who.output
    assert "Kestrel Assist" in who.output and "could not find" not in who.output


def test_ask_before_any_build_says_what_to_do(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    result = runner.invoke(app, ["ask", str(project), "Hi?"])
    assert result.exit_code == 2 and "shoptalk build" in result.output


def test_data_check_lists_every_problem_and_marks_trained_tokens(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    with (project / "faq.csv").open("a") as f:
        f.write("Empty answer here?,\n")
    (project / "chats.jsonl").write_text('{"messages": "hi"}\nnot json\n')
    result = runner.invoke(app, ["data", "check", str(project), "--samples", "2"])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "3 problem(s)" in output
    assert "faq.csv:8" in output and "chats.jsonl:1" in output and "chats.jsonl:2" in output
    assert "6 FAQ rows" in output, "the good rows are still counted"
    assert "<|im_start|>assistant" in output


def test_skip_mode_keeps_good_rows_and_reports_bad_ones(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model, epochs=1)
    config = yaml.safe_load((project / "shoptalk.yaml").read_text())
    config["data"]["on_error"] = "skip"
    (project / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    with (project / "faq.csv").open("a") as f:
        f.write("Broken row with no answer?,\n")
    result = runner.invoke(app, ["build", str(project), "--stop-after", "1"])
    assert result.exit_code == 0, result.output
    (dataset,) = (project / ".shoptalk" / "datasets").iterdir()
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert len(manifest["skipped"]) == 1 and "faq.csv:8" in manifest["skipped"][0]
    assert manifest["counts"]["train"]["faq"] == 6


def test_data_check_samples_are_shown_redacted(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    (project / "faq.csv").write_text(
        "question,answer\nWho handles refunds?,Write to jane.roe@example.com or call 13812345678.\n"
    )
    result = runner.invoke(app, ["data", "check", str(project), "--samples", "2"])
    output = " ".join(result.output.split())
    assert "jane.roe@example.com" not in output and "13812345678" not in output
    assert "<EMAIL_1>" in output.replace(" ", "")


def test_data_check_reads_preference_and_question_files(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    config = yaml.safe_load((project / "shoptalk.yaml").read_text())
    config["sources"]["preferences"] = ["prefs.jsonl"]
    (project / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    good = {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}
    (project / "prefs.jsonl").write_text(
        json.dumps(good) + "\n" + json.dumps({"prompt": "x"}) + "\n"
    )
    with (project / "questions" / "domain.jsonl").open("a") as f:
        f.write('{"question": "Where?", "must_include": "Oslo"}\n')
    result = runner.invoke(app, ["data", "check", str(project), "--samples", "0"])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "2 problem(s)" in output
    assert "prefs.jsonl:2" in output and "domain.jsonl:3" in output
    assert "1 preference pairs" in output and "3 questions" in output


def test_data_check_shows_chinese_whole(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    (project / "faq.csv").write_text("问题,答案\n可以退货吗？,七天内可以无理由退货。\n")
    (project / "chats.jsonl").write_text("")
    result = runner.invoke(app, ["data", "check", str(project), "--samples", "1"])
    assert result.exit_code == 0, result.output
    output = "".join(result.output.split())
    assert "\ufffd" not in output
    assert "可以退货吗？" in output and "七天内可以无理由退货。" in output


def test_a_csv_row_with_an_unquoted_comma_is_reported_and_skipped(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model, epochs=1)
    with (project / "faq.csv").open("a") as f:
        f.write("Do you ship abroad?,Yes, to 40 countries.\n")
    check = runner.invoke(app, ["data", "check", str(project), "--samples", "0"])
    assert check.exit_code == 1 and "faq.csv:8" in " ".join(check.output.split())

    config = yaml.safe_load((project / "shoptalk.yaml").read_text())
    config["data"]["on_error"] = "skip"
    (project / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    report = runner.invoke(app, ["data", "report", str(project)])
    assert report.exit_code == 0, report.output
    (dataset,) = (project / ".shoptalk" / "datasets").iterdir()
    assert "faq.csv:8" in (dataset / "report.html").read_text(encoding="utf-8")
    assert "Do you ship abroad?" not in (dataset / "train.jsonl").read_text(encoding="utf-8")


def test_eval_with_other_questions_keeps_the_builds_scorecard(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model, epochs=1)
    assert runner.invoke(app, ["build", str(project)]).exit_code == 0
    (run_evals,) = (project / ".shoptalk" / "evals").iterdir()
    built = {name: (run_evals / name).read_bytes() for name in ("scorecard.json", "answers.json")}
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"question": "Pallet fee?", "must_include": ["$18"]}) + "\n")
    domain = project / "questions" / "domain.jsonl"

    # Several files after one flag, the project folder last: as the docs show it.
    both = runner.invoke(app, ["eval", "--questions", str(extra), str(domain), str(project)])
    assert both.exit_code == 0, both.output
    one = runner.invoke(app, ["eval", str(project), "--questions", str(extra)])
    assert one.exit_code == 0, one.output

    for name, data in built.items():
        assert (run_evals / name).read_bytes() == data, f"the build's {name} was replaced"
    folders = sorted(run_evals.glob("questions-*"))
    assert len(folders) == 2
    suites = [set(json.loads((f / "scorecard.json").read_text())["suites"]) for f in folders]
    # The build indexed the documents: every suite is also asked with retrieval ('+rag').
    assert sorted(suites, key=len) == [
        {"extra", "extra+rag"},
        {"extra", "domain", "extra+rag", "domain+rag"},
    ]
    for result in (both, one):
        printed = "".join(result.output.split())
        assert any(f"{f}/report.html" in printed for f in folders)


def test_repeatable_options_take_several_values_after_one_flag():
    from typer.main import get_command

    from shoptalk.cli import spread_values

    command = get_command(app).commands["eval"]
    spread = spread_values(command, ["P", "--questions", "a", "b", "--json", "--compare", "x", "y"])
    assert spread == ["P", "--questions", "a", "--questions", "b", "--json", "--compare", "x", "y"]
    assert spread_values(command, ["--questions", "a", "b", "P"]) == [
        "--questions", "a", "--questions", "b", "P"
    ]  # fmt: skip


def test_version():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"shoptalk {version('shoptalk')}"


def test_keys_list_fits_80_columns_and_never_cuts_the_id(tmp_path):
    (tmp_path / "shoptalk.yaml").write_text("name: Kestrel\n", encoding="utf-8")
    create = [
        ["--name", "customer-support-team-eu-west", "--scopes", "chat,embeddings,editor"],
        ["--name", "bob", "--scopes", "chat", "--models", "base,sales-bot-2026,support-bot"],
        [
            "--name",
            "carol",
            "--rpm",
            "1200",
            "--tpm",
            "250000",
            "--quota-tokens-per-day",
            "5000000",
        ],
    ]
    for args in create:
        made = runner.invoke(app, ["keys", "create", str(tmp_path), *args])
        assert made.exit_code == 0, made.output

    listed = runner.invoke(app, ["keys", "list", str(tmp_path)], env={"COLUMNS": "80"})
    as_json = runner.invoke(app, ["keys", "list", str(tmp_path), "--json"])

    assert listed.exit_code == 0 and as_json.exit_code == 0
    keys = json.loads(as_json.stdout)
    assert [k["name"] for k in keys] == ["customer-support-team-eu-west", "bob", "carol"]
    assert {"id", "scopes", "models", "rpm", "expires_at", "last_used_at"} <= set(keys[0])
    assert not {"secret", "hash", "key_hash"} & set(keys[0]), "never the secret"
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for key in keys:
        assert any(key["id"] in line for line in lines), f"{key['id']} cut at 80 columns"
    assert "1.2k rpm" in listed.stdout and "5M/day" in listed.stdout


def test_chat_keeps_lines_typed_while_an_answer_is_generated(tmp_path, tiny_model, monkeypatch):
    import os
    import time

    from shoptalk import cli
    from shoptalk.rag.session import Session

    project = write_project(tmp_path / "p", tiny_model)
    read_end, write_end = os.pipe()
    keyboard = os.fdopen(write_end, "w")
    keyboard.write("first question\n")
    keyboard.flush()
    asked: list[str] = []

    class SlowAssistant:
        label = "a slow assistant"
        index = None  # no retrieval index: the chat's own model answers

        def reply(self, text: str, max_new_tokens: int, keep: bool = False) -> str:
            asked.append(text)
            if len(asked) == 1:  # the user types on while the first answer is generated
                keyboard.write("second question\nthird question\n\n")
                keyboard.close()
                time.sleep(0.3)
            return f"answer to {text}"

    monkeypatch.setattr(
        Session, "open", classmethod(lambda cls, project, base, rag: SlowAssistant())
    )
    # The keyboard is a live pipe: CliRunner's own stdin holds only what exists up front.
    typed_lines = cli.typed_lines
    with os.fdopen(read_end, "r") as keys:
        monkeypatch.setattr(cli, "typed_lines", lambda _: typed_lines(keys))
        result = runner.invoke(app, ["chat", str(project)])

    assert result.exit_code == 0, result.output
    assert asked == ["first question", "second question", "third question"]
    said = [line for line in result.stdout.splitlines() if line.startswith(("you>", "assistant>"))]
    assert said[:6] == [
        "you> first question",
        "assistant> answer to first question",
        "you> second question",
        "assistant> answer to second question",
        "you> third question",
        "assistant> answer to third question",
    ]


def test_init_writes_the_system_prompt_in_the_sources_language(tmp_path):
    rows = "退货期限是多久？,退货期限是75天。\n会员积分怎么用？,每100积分可以抵3元。\n"
    (tmp_path / "faq.csv").write_text(f"question,answer\n{rows}", encoding="utf-8")
    target = tmp_path / "zh"
    result = runner.invoke(app, ["init", str(target), "--faq", str(tmp_path / "faq.csv")])
    assert result.exit_code == 0, result.output
    prompt = load_config(target).system_prompt
    assert prompt.startswith("你是") and "My organization" in prompt
    named = runner.invoke(app, ["init", str(tmp_path / "named"), "--name", "康宁医疗集团"])
    assert load_config(tmp_path / "named").system_prompt.startswith("你是康宁医疗集团"), (
        named.output
    )


def test_init_keeps_the_organizations_own_contacts_out_of_redaction(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cards.md").write_text("Lost card? Call 1-800-555-0142 or cards@acme.example.\n")
    (docs / "loans.md").write_text("Questions: 1-800-555-0142, loans@acme.example.\n")
    # A number one file gives (a person's) stays redacted.
    (docs / "case.md").write_text("Jane asked us to call her at 555-201-7788.\n")
    target = tmp_path / "p"
    result = runner.invoke(app, ["init", str(target), "--docs", str(docs)])
    assert result.exit_code == 0, result.output
    assert load_config(target).data.pii.allow == ["1-800-555-0142", "@acme.example"]
    assert "remove any that are personal" in (target / "shoptalk.yaml").read_text()


def test_init_takes_several_files_after_one_flag(tmp_path):
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("question,answer\nA?,B.\n")
    for name in ("docs1", "docs2"):
        (tmp_path / name).mkdir()
    target = tmp_path / "assistant"
    args = ["--faq", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    args += ["--docs", str(tmp_path / "docs1"), str(tmp_path / "docs2"), "--name", "ACME"]

    result = runner.invoke(app, ["init", str(target), *args])

    assert result.exit_code == 0, result.output
    config = load_config(target)
    assert config.sources.faq == ["../a.csv", "../b.csv"]
    assert config.sources.docs == ["../docs1", "../docs2"]


def test_init_gives_the_assistant_the_name_the_documents_give_it(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("Replies drafted by Ridge, our assistant, are checked.\n")
    (docs / "faq.md").write_text(
        "Ask our virtual assistant, Ridge, about fees. Our assistant, The\n"
    )
    result = runner.invoke(
        app, ["init", str(tmp_path / "en"), "--docs", str(docs), "--name", "Acme"]
    )
    assert result.exit_code == 0, result.output
    prompt = load_config(tmp_path / "en").system_prompt
    assert prompt.startswith("You are Ridge, the assistant of Acme.")
    zh = tmp_path / "zh_docs"
    zh.mkdir()
    (zh / "介绍.md").write_text(
        "欢迎使用我们的智能助手“小康”，它可以回答挂号问题。\n", encoding="utf-8"
    )
    runner.invoke(app, ["init", str(tmp_path / "zh"), "--docs", str(zh), "--name", "康宁医疗"])
    assert load_config(tmp_path / "zh").system_prompt.startswith("你是康宁医疗的智能助手“小康”。")
    # Without a name in the documents: the assistant of the organization, unnamed.
    runner.invoke(app, ["init", str(tmp_path / "plain"), "--name", "Acme"])
    assert load_config(tmp_path / "plain").system_prompt.startswith(
        "You are the assistant of Acme. Answer with Acme's facts"
    )
    runner.invoke(app, ["init", str(tmp_path / "plural"), "--name", "Vale Health Partners"])
    assert "with Vale Health Partners' facts" in load_config(tmp_path / "plural").system_prompt
