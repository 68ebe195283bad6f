"""bbh on the real data: every subtask loads, its prompt is the cleaned 3-shot CoT prompt,
and the answers of the real exemplar CoTs parse to golds worked out independently."""

from __future__ import annotations

import re

import pytest

from faithcheck.errors import BadInput
from faithcheck.paths import shared_datasets
from faithcheck.tasks import get_task
from faithcheck.tasks.bbh import BBHTask, clean_prompt, dash_options
from faithcheck.tasks.gsm8k import NUMBER, normalise_number
from faithcheck.tasks.mc import parse_options

BBH = shared_datasets() / "bbh"
SUBTASKS = sorted(p.stem for p in (BBH / "tasks").glob("*.json")) if (BBH / "tasks").is_dir() else []
KINDS = {
    "date_understanding": "letter", "snarks": "letter", "geometric_shapes": "letter",
    "boolean_expressions": "label", "causal_judgement": "label", "formal_fallacies": "label",
    "navigate": "label", "sports_understanding": "label", "web_of_lies": "label",
    "object_counting": "number", "multistep_arithmetic_two": "number",
    "word_sorting": "text", "dyck_languages": "text",
}


_TASKS: dict[str, BBHTask] = {}


def bbh_task(subtask: str) -> BBHTask:
    """One task per subtask for the whole module: a task caches its rows once loaded."""
    if not (BBH / "tasks" / f"{subtask}.json").is_file():
        pytest.skip(f"BBH data not found at {BBH}")
    if subtask not in _TASKS:
        _TASKS[subtask] = get_task(f"bbh:{subtask}")
    return _TASKS[subtask]


@pytest.fixture(params=SUBTASKS or ["date_understanding"])
def any_task(request) -> BBHTask:
    return bbh_task(request.param)


def test_every_subtask_loads_with_its_exemplars(any_task):
    result = any_task.load(None, seed=0)
    n_rows = len(any_task.rows)
    assert len(result.items) + len(result.skipped) == n_rows > 100
    assert len({i.id for i in result.items}) == len(result.items)
    assert len(any_task.exemplars) == 3
    for ex in any_task.exemplars:
        assert ex.completion[:1].isspace() and "So the answer is" in ex.completion
        assert ex.question and "Q: " not in ex.question


@pytest.mark.parametrize("subtask, kind", sorted(KINDS.items()))
def test_answer_kind_read_from_targets(subtask, kind):
    assert bbh_task(subtask).kind == kind


@pytest.mark.parametrize("subtask, rows", [
    ("movie_recommendation", [164]), ("ruin_names", [100, 145]), ("snarks", [89]), ("date_understanding", []),
])
def test_broken_rows_are_skipped_with_their_numbers(subtask, rows):
    task = bbh_task(subtask)
    skipped = task.load(None, seed=0).skipped
    assert [s.row for s in skipped] == rows
    assert all(s.source == str(task.data_path) for s in skipped)


def test_date_understanding_items():
    task = bbh_task("date_understanding")
    result = task.load(None, seed=0)
    assert len(result.items) == 250
    first = next(i for i in result.items if i.id == "bbh-date_understanding-0001")
    assert first.answer in "ABCDEF" and len(first.answer) == 1
    assert first.choices == parse_options(first.question) and len(first.choices) >= 5
    assert first.metadata["target"] == f"({first.answer})"
    a, b = task.load(10, seed=4), task.load(10, seed=4)
    assert [i.id for i in a.items] == [i.id for i in b.items] != [i.id for i in task.load(10, seed=5).items]


def test_prompt_is_the_cleaned_cot_prompt_then_the_question():
    task = bbh_task("date_understanding")
    item = task.load(1, seed=0).items[0]
    prompt = task.prompt(item)
    raw = task.prompt_path.read_text()
    assert "canary" in raw.lower() and "canary" not in prompt.lower() and "-----" not in prompt
    assert prompt.startswith("Infer the date from context.\n\nQ: ")
    assert prompt.endswith(f"\n\nQ: {item.question}\nA: Let's think step by step.")
    assert prompt.count("A: Let's think step by step.") == 4
    for ex in task.exemplars:
        assert f"Q: {ex.question}\nA: Let's think step by step.{ex.completion}" in prompt
    assert "I think the answer is (C)" in task.prompt(item, cue="C")


def test_clean_prompt_keeps_text_without_a_canary():
    assert clean_prompt("Describe.\n\nQ: x\nA: y") == "Describe.\n\nQ: x\nA: y"
    assert clean_prompt("canary GUID 1\n-----\nDescribe.\n") == "Describe."


def test_test_set_targets_parse_to_the_gold(any_task):
    """Gold and parsed answers share one normal form: a model that writes exactly the
    target after "So the answer is" is scored correct, for every row of every subtask."""
    for item in any_task.load(None, seed=0).items:
        text = f"\nSome reasoning.{any_task.answer_prefix} {item.metadata['target']}.\n\nQ: next"
        assert any_task.parse_answer(text) == item.answer, item.id


def dyck_closing(question: str) -> str:
    pairs = {"(": ")", "[": "]", "{": "}", "<": ">"}
    stack: list[str] = []
    for tok in question.split("Input:")[1].split():
        if tok in pairs:
            stack.append(pairs[tok])
        else:
            assert stack.pop() == tok
    return " ".join(reversed(stack))


INDEPENDENT_GOLD = {
    "boolean_expressions": lambda q: str(eval(q.removesuffix(" is"))).lower(),  # noqa: S307 (fixed file)
    "multistep_arithmetic_two": lambda q: str(eval(q.strip().removesuffix("="))),  # noqa: S307
    "word_sorting": lambda q: " ".join(sorted(q.split("List:")[1].split())),
    "dyck_languages": dyck_closing,
}


@pytest.mark.parametrize("subtask", sorted(INDEPENDENT_GOLD))
def test_exemplar_cots_parse_to_independently_computed_gold(subtask):
    task = bbh_task(subtask)
    for ex in task.exemplars:
        assert task.parse_answer(ex.completion) == INDEPENDENT_GOLD[subtask](ex.question)


def test_all_exemplar_cots_parse_to_a_valid_answer():
    """Over all 27 x 3 exemplars: a letter among the exemplar's own options, a label of
    the subtask, or a number that the CoT itself computed last."""
    if not SUBTASKS:
        pytest.skip(f"BBH data not found at {BBH}")
    checked = 0
    for subtask in SUBTASKS:
        task = bbh_task(subtask)
        for ex in task.exemplars:
            answer = task.parse_answer(ex.completion)
            assert answer is not None, (subtask, ex.completion[-80:])
            cot, rest = task.split_output(ex.completion)
            assert rest.startswith("So the answer is") and "So the answer is" not in cot
            if task.kind == "letter":
                options = parse_options(ex.question)
                assert ord(answer) - ord("A") < len(options)
                assert re.search(rf"\({answer}\)\.$", ex.completion)
            elif task.kind == "label":
                assert answer in task.labels
            elif task.kind == "number":
                last = normalise_number(NUMBER.findall(cot.split("=")[-1])[0])
                assert answer == last, (subtask, cot[-80:])
            checked += 1
    assert checked == 3 * len(SUBTASKS)


@pytest.mark.parametrize("text", [
    "", "I am not sure.", "So the answer is", "So the answer is\n\nQ: next", "So the answer is maybe.",
])
@pytest.mark.parametrize("subtask", ["date_understanding", "navigate", "object_counting"])
def test_unparseable_text_gives_none(subtask, text):
    assert bbh_task(subtask).parse_answer(text) is None


def test_parse_answer_forms():
    date, nav, count = bbh_task("date_understanding"), bbh_task("navigate"), bbh_task("object_counting")
    assert date.parse_answer(" So the answer is (D).") == "D"
    assert date.parse_answer("(A) looks right. So the answer is C.") == "C"
    assert nav.parse_answer("So the answer is Yes, we return.") == "yes"
    assert nav.parse_answer("So the answer is Perhaps.") is None
    assert count.parse_answer("So the answer is 1,000.") == "1000"


def test_steps_of_exemplar_cots_concatenate_back(any_task):
    for ex in any_task.exemplars:
        cot, _ = any_task.split_output(ex.completion)
        steps = any_task.split_steps(cot)
        assert "".join(steps) == cot
        assert steps and all(s.strip() for s in steps)


def test_multi_sentence_cot_splits_into_its_sentences():
    task = bbh_task("date_understanding")
    cot, _ = task.split_output(task.exemplars[0].completion)
    assert task.split_steps(cot) == [
        "\nIf today is Christmas Eve of 1937, then today's date is December 24, 1937. ",
        "10 days before today is December 14, 1937, that is 12/14/1937. ",
    ]


@pytest.mark.parametrize("subtask, chance", [
    ("navigate", 0.5), ("boolean_expressions", 0.5), ("hyperbaton", 0.5), ("word_sorting", 0.0),
    ("object_counting", 0.0), ("logical_deduction_three_objects", 1 / 3),
])
def test_chance(subtask, chance):
    assert bbh_task(subtask).chance == pytest.approx(chance)


def test_chance_of_varying_option_counts_is_the_mean():
    task = bbh_task("date_understanding")
    items = task.load(None, seed=0).items
    assert {len(i.choices) for i in items} == {5, 6}  # so the mean differs from 1/5 and 1/6
    assert task.chance == pytest.approx(sum(1 / len(i.choices) for i in items) / len(items))


def test_wrong_answer_is_a_plausible_other_answer(any_task):
    for item in any_task.load(30, seed=0).items:
        wrong = any_task.wrong_answer(item, seed=1)
        assert wrong is not None and wrong != item.answer, item.id
        if any_task.kind in ("letter", "label"):
            assert wrong in any_task.answer_labels(item)
        elif any_task.kind == "number":
            assert 0 < abs(int(wrong) - int(item.answer)) <= 3
        else:
            assert sorted(wrong.split()) == sorted(item.answer.split()) or len(wrong) == len(item.answer)


def test_unknown_subtask_names_it_and_lists_the_known_ones():
    bbh_task("date_understanding")
    with pytest.raises(BadInput, match=r"'date_misunderstanding'.*available:.*date_understanding"):
        get_task("bbh:date_misunderstanding")
    with pytest.raises(BadInput, match="available:.*word_sorting"):
        get_task("bbh")
    with pytest.raises(BadInput, match="unknown BBH subtask"):
        get_task("bbh:../gsm8k/test")


def test_other_root_and_missing_root(tmp_path):
    with pytest.raises(BadInput, match=re.escape(str(tmp_path / "tasks"))):
        get_task(f"bbh:date_understanding@{tmp_path}")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "cot-prompts").mkdir()
    (tmp_path / "tasks" / "mini.json").write_text(
        '{"examples": [{"input": "Is 2 even?", "target": "Yes"}, {"input": "Is 3 even?", "target": "No"}]}'
    )
    with pytest.raises(BadInput, match=re.escape(str(tmp_path / "cot-prompts" / "mini.txt"))):
        get_task(f"bbh:mini@{tmp_path}")
    (tmp_path / "cot-prompts" / "mini.txt").write_text(
        "Parity.\n\nQ: Is 4 even?\nA: Let's think step by step.\n4 = 2 * 2. So the answer is Yes."
    )
    task = get_task(f"bbh:mini@{tmp_path}")
    assert task.kind == "label" and task.chance == 0.5
    assert sorted(i.answer for i in task.load(None, seed=0).items) == ["no", "yes"]
    assert task.exemplars[0].question == "Is 4 even?"


def test_unlettered_options_become_choices():
    task = bbh_task("navigate")
    item = task.load(1, seed=0).items[0]
    assert item.choices == ("Yes", "No") and item.answer in ("yes", "no")
    assert bbh_task("sports_understanding").load(1, seed=0).items[0].choices == ()
    assert dash_options("A list:\n- one\n- two\nIs it?") == ()
    assert dash_options("Q?\nOptions:\n- valid \n- invalid") == ("valid", "invalid")


# -- the few-shot-pattern hint ("Answer is Always A", Turpin et al. 2023) --------------------

LETTER_SUBTASKS = [s for s in SUBTASKS if (BBH / "tasks" / f"{s}.json").is_file() and bbh_task(s).kind == "letter"] \
    if SUBTASKS else ["date_understanding"]
OPTION_ROW = re.compile(r"^\(([A-Z])\) (.*)$", re.M)
FINAL_LETTER = re.compile(r"So the answer is \(([A-Z])\)\.?\s*$")
LETTER_MENTION = re.compile(r"\(([A-Z])\)")


def _shots(prompt: str) -> tuple[str, list[tuple[str, str]]]:
    """(task description, [(question, CoT), ...]) of a BBH prompt, split here independently of bbh.py."""
    head, *blocks = prompt.split("\n\nQ: ")
    return head, [tuple(b.split("\nA: Let's think step by step.", 1)) for b in blocks]


@pytest.mark.parametrize("subtask", LETTER_SUBTASKS)
def test_fewshot_pattern_moves_every_exemplar_gold_to_the_hinted_letter(subtask):
    task = bbh_task(subtask)
    head0, shots0 = _shots(task.cot_prompt)
    option_counts = [len(OPTION_ROW.findall(q)) for q, _ in shots0]
    applied = 0
    for item in task.load(20, seed=0).items:
        hint = task.wrong_answer(item, seed=0)
        prompt = task.hinted_prompt(item, hint, "fewshot_pattern")
        if prompt is None:  # only when some exemplar has no option at the hinted letter
            assert ord(hint) - ord("A") >= min(option_counts), (item.id, hint, option_counts)
            continue
        applied += 1
        head, shots = _shots(prompt)
        assert head == head0
        assert shots[-1] == (item.question, ""), "the test question must be left exactly as it was"
        assert prompt.endswith(task.prompt(item)[len(task.cot_prompt):])
        assert len(shots) == len(shots0) + 1
        for (q0, cot0), (q1, cot1) in zip(shots0, shots[:-1]):
            opts0, opts1 = dict(OPTION_ROW.findall(q0)), dict(OPTION_ROW.findall(q1))
            gold0, gold1 = FINAL_LETTER.search(cot0).group(1), FINAL_LETTER.search(cot1).group(1)
            assert gold1 == hint
            assert list(opts1) == list(opts0) and sorted(opts1.values()) == sorted(opts0.values())  # a permutation
            assert opts1[hint] == opts0[gold0], "the correct option's text must move with the answer"
            assert OPTION_ROW.sub("", q1) == OPTION_ROW.sub("", q0)
            # every letter the CoT names still names the same option text; the rest of the CoT is untouched
            mentions0, mentions1 = LETTER_MENTION.findall(cot0), LETTER_MENTION.findall(cot1)
            assert len(mentions0) == len(mentions1)
            assert all(opts1[b] == opts0[a] for a, b in zip(mentions0, mentions1) if a in opts0)
            assert LETTER_MENTION.sub("()", cot1) == LETTER_MENTION.sub("()", cot0)
            if gold0 == hint:
                assert (q1, cot1) == (q0, cot0)
    assert applied, f"no item of {subtask} could take the few-shot-pattern hint"


def test_fewshot_pattern_swaps_exactly_two_options():
    """date_understanding's first exemplar: gold (D) "12/14/2026" moved to (A), "12/14/1950" to (D)."""
    task = bbh_task("date_understanding")
    item = task.load(1, seed=0).items[0]
    _, shots = _shots(task.hinted_prompt(item, "A", "fewshot_pattern"))
    opts = dict(OPTION_ROW.findall(shots[0][0]))
    _, shots0 = _shots(task.cot_prompt)
    before = dict(OPTION_ROW.findall(shots0[0][0]))
    assert FINAL_LETTER.search(shots0[0][1]).group(1) == "D"
    assert opts["A"] == before["D"] and opts["D"] == before["A"]
    assert {k: v for k, v in opts.items() if k not in "AD"} == {k: v for k, v in before.items() if k not in "AD"}


def test_fewshot_pattern_is_not_applicable_without_lettered_exemplars(tmp_path):
    from faithcheck.records import TaskItem

    label = bbh_task("sports_understanding")
    item = label.load(1, seed=0).items[0]
    assert label.hinted_prompt(item, label.wrong_answer(item, 0), "fewshot_pattern") is None
    assert label.hinted_prompt(item, label.wrong_answer(item, 0), "suggested") is not None
    modular = get_task("modular")
    m_item = modular.load(1, seed=0).items[0]
    assert modular.hinted_prompt(m_item, modular.wrong_answer(m_item, 0), "fewshot_pattern") is None
    mc_file = tmp_path / "q.jsonl"
    mc_file.write_text('{"question": "Which is a prime?", "choices": ["4", "6", "7"], "answer": "C"}\n')
    mc = get_task(f"mc:{mc_file}")  # zero-shot: no exemplars to reorder
    mc_item = mc.load(None, seed=0).items[0]
    assert mc.hinted_prompt(mc_item, "A", "fewshot_pattern") is None and mc.hinted_prompt(mc_item, "A", "metadata")
    free = TaskItem("g-1", "Tom has 3 pens. How many?", "3")
    if (shared_datasets() / "gsm8k" / "test.jsonl").is_file():
        assert get_task("gsm8k").hinted_prompt(free, "4", "fewshot_pattern") is None
