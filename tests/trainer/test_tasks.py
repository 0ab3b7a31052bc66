"""Tasks: answer parsing and grading on the cases that break naive parsers, and data loading."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from society_trainer.tasks import TASK_NAMES, DatasetError, Problem, PromptTemplates, get_task

DATA = Path(__file__).parent / "data"


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def write_parquet(path: Path, records: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path)
    return path


# ---------------------------------------------------------------------------- registry, prompts


def test_registry_names_every_task():
    assert TASK_NAMES == ("arithmetic", "gsm8k", "math", "mmlu", "custom", "tiny-equations")
    assert [get_task(name).name for name in TASK_NAMES] == list(TASK_NAMES)
    with pytest.raises(ValueError, match="unknown task 'chess'.*arithmetic"):
        get_task("chess")


def test_import_stays_light():
    code = (
        "import sys, society_trainer.tasks; "
        "heavy = {'torch', 'transformers', 'datasets', 'sympy'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_prompts_have_the_placeholders_and_format(name):
    prompts = get_task(name).prompts
    generation = prompts.generation.format(question="Q?")
    critic = prompts.critic.format(question="Q?", own_answer="MINE", others="THEIRS")
    summary = prompts.summarizer.format(question="Q?", responses="R1\nR2")
    assert "Q?" in generation
    # the critic continues its own conversation: its question and answer are already in context
    # (tiny-equations restates its own answer: builtin:tiny-equations copies it from there)
    assert "THEIRS" in critic and ("MINE" in critic) == (name == "tiny-equations")
    assert "Q?" in summary and "R1\nR2" in summary
    with pytest.raises(KeyError):
        prompts.critic.format(question="Q?", own_answer="MINE")


@pytest.mark.parametrize(
    ("name", "instruction"),
    [
        ("arithmetic", "at the end of your response"),
        ("gsm8k", "\\boxed{answer}"),
        ("math", "\\boxed{answer}"),
        ("mmlu", "The answer is (X)"),
        ("custom", "\\boxed{answer}"),
    ],
)
def test_answer_format_is_task_specific_and_in_every_answering_prompt(name, instruction):
    prompts = get_task(name).prompts
    assert instruction in prompts.generation.format(question="q")
    assert instruction in prompts.critic.format(question="q", own_answer="a", others="b")


def test_prompt_overrides_are_checked_when_built():
    base = get_task("gsm8k").prompts
    with pytest.raises(ValueError, match=r"critic prompt must use \{others\}"):
        PromptTemplates(base.generation, "{question} {own_answer}", base.summarizer)
    with pytest.raises(
        ValueError,
        match=r"generation prompt must use \{question\} .* uses \{answer\}, \{question\}",
    ):
        PromptTemplates("{question} {answer}", base.critic, base.summarizer)
    with pytest.raises(ValueError, match=r"summarizer prompt must use \{responses\}"):
        PromptTemplates(base.generation, base.critic, "{question}")
    PromptTemplates(base.generation, "Others said: {others}. Again?", base.summarizer)
    PromptTemplates(base.generation, "{question} {own_answer} {others}", base.summarizer)
    with pytest.raises(ValueError, match="not a valid format string"):
        PromptTemplates("{question", base.critic, base.summarizer)
    PromptTemplates("Q: {question}", base.critic, base.summarizer)


# ---------------------------------------------------------------------------- arithmetic


def test_arithmetic_problems_are_what_the_paper_generates():
    task = get_task("arithmetic")
    problems = task.load("train", 200, seed=0)
    assert len(problems) == 200
    for problem in problems:
        expression = problem.question.removeprefix("What is the result of ").removesuffix("?")
        values = [int(v) for v in expression.replace("*", "+").replace("-", "+").split("+")]
        assert len(values) == 6 and all(0 <= v <= 29 for v in values)
        assert expression == "{}+{}*{}+{}-{}*{}".format(*values)
        assert problem.answer == str(eval(expression))  # noqa: S307 - our own digits and operators
        assert problem.id.startswith("arithmetic-train-")


def test_arithmetic_is_deterministic_and_seed_dependent():
    task = get_task("arithmetic")
    assert task.load("eval", 50, seed=3) == task.load("eval", 50, seed=3)
    assert task.load("eval", 50, seed=3) != task.load("eval", 50, seed=4)
    assert task.load("eval", 50, seed=3) == task.load("eval", 120, seed=3)[:50]


def test_arithmetic_train_and_eval_are_disjoint():
    task = get_task("arithmetic")
    train = {p.question for p in task.load("train", 500, seed=0)}
    evaluation = {p.question for p in task.load("eval", 500, seed=0)}
    assert len(train) == 500 and len(evaluation) == 500
    assert not train & evaluation


def test_arithmetic_range_can_be_narrowed():
    task = get_task("arithmetic", max_value=9)
    problems = task.load("eval", 300, seed=0)
    values = {
        int(v)
        for p in problems
        for v in re.split(r"[-+*]", p.question.removeprefix("What is the result of ")[:-1])
    }
    assert values == set(range(10))
    assert not {p.question for p in problems} & {p.question for p in task.load("train", 300, 0)}
    with pytest.raises(DatasetError, match="32 distinct problems with values 0..1 that a Society"):
        get_task("arithmetic", max_value=1).load("eval", 40, seed=0)
    with pytest.raises(ValueError, match="only for the arithmetic task"):
        get_task("gsm8k", max_value=9)


def test_arithmetic_takes_no_source():
    with pytest.raises(DatasetError, match="takes no source"):
        get_task("arithmetic").load("train", 1, seed=0, source="data.jsonl")


@pytest.mark.parametrize(
    ("response", "parsed"),
    [
        ("3+4*5 = 23, then 23+6 = 29, and 29-7*8 = 29-56 = -27. The answer is -27.", "-27"),
        ("The result is 1,234.", "1234"),
        ("So 10-3 = 7", "7"),
        ("= 12.0", "12"),
        ("I cannot compute this.", None),
    ],
)
def test_arithmetic_reads_the_last_number(response, parsed):
    assert get_task("arithmetic").parse(response) == parsed


def test_arithmetic_grading():
    task = get_task("arithmetic")
    assert task.is_correct(task.parse("... so the answer is -27"), "-27")
    assert not task.is_correct(task.parse("... so the answer is 27"), "-27")
    assert not task.is_correct(task.parse("no idea"), "-27")


# ---------------------------------------------------------------------------- GSM8K


@pytest.mark.parametrize(
    ("response", "parsed"),
    [
        ("She pays 3*4 = 12 dollars. \\boxed{12}", "12"),
        ("Total: \\boxed{\\$1,234}", "1234"),
        ("The answer is $1,234.", "1234"),
        ("The temperature drops to -5 degrees.", "-5"),
        ("\\boxed{-3}", "-3"),
        ("It costs \\boxed{12.50} in total, or 1250 cents.", "12.5"),
        ("So x = 18.0", "18"),
        ("First \\boxed{7} was wrong; the answer is \\boxed{9}.", "9"),
        ("\\boxed{18 \\text{ apples}}", "18"),
        ("50% of 40 is 20. Final answer: 20.", "20"),
        ("\\boxed{} and nothing else", None),
        ("I do not know.", None),
    ],
)
def test_gsm8k_parse(response, parsed):
    assert get_task("gsm8k").parse(response) == parsed


@pytest.mark.parametrize(
    ("response", "parsed"),
    [
        ("\\boxed{1\\,000}", "1000"),  # a thin space as the thousands separator
        ("\\boxed{1\\,000\\,000}", "1000000"),
        ("\\boxed{1\\ 000}", "1000"),
        ("\\boxed{1~000}", "1000"),
        ("\\boxed{1{,}234.5}", "1234.5"),
        ("\\boxed{12\\!}", "12"),
        ("\\boxed{-\\$5}", "-5"),
        ("\\boxed{\\$-5}", "-5"),
        ("\\boxed{- 5}", "-5"),
        ("\\boxed{+5}", "5"),
        ("\\boxed{-{5}}", "-5"),
        ("\\boxed{{-5}}", "-5"),
        ("\\boxed{{{42}}}", "42"),
        ("\\boxed{\\left(7\\right)}", "7"),
        ("\\boxed{\\frac{3}{4}}", "0.75"),
        ("\\boxed{\\dfrac{10}{2}}", "5"),
        ("\\boxed{\\tfrac34}", "0.75"),
        ("\\boxed{-\\frac{1}{2}}", "-0.5"),
        ("\\boxed{\\frac{-3}{4}}", "-0.75"),
        ("\\boxed{\\frac{1,000}{4}}", "250"),
        ("\\boxed{\\$\\,1,\\!250}", "1250"),
        ("\\boxed{\\mathbf{18}\\text{ dollars}}", "18"),
    ],
)
def test_gsm8k_reads_latex_numbers_in_the_box(response, parsed):
    assert get_task("gsm8k").parse(response) == parsed


def test_gsm8k_latex_fractions_grade_as_the_decimals_they_equal():
    task = get_task("gsm8k")
    assert task.is_correct(task.parse("\\boxed{\\frac{15}{2}}"), "7.5")
    assert task.is_correct(task.parse("So \\boxed{1\\,200}."), "1200")
    assert not task.is_correct(task.parse("\\boxed{-\\$5}"), "5")


@pytest.mark.parametrize(
    ("pred", "ref", "correct"),
    [
        ("12.0", "12", True),
        ("12.50", "12.5", True),
        ("1,234", "1234", True),
        ("$5", "5", True),
        ("-4", "4", False),
        ("13", "12", False),
        (None, "12", False),
    ],
)
def test_gsm8k_grading(pred, ref, correct):
    assert get_task("gsm8k").is_correct(pred, ref) is correct


def test_gsm8k_reference_is_the_number_after_the_marker():
    task = get_task("gsm8k")
    record = {"question": "How much?", "answer": "3 * 4 = <<3*4=12>>12\n2 + 12 = 14\n#### 1,014"}
    assert task.convert(record) == ("How much?", "1014")
    assert task.convert({"question": "q", "answer": "#### -7"}) == ("q", "-7")
    assert task.convert({"question": "q", "answer": "42"}) == ("q", "42")
    with pytest.raises(ValueError, match="not a number"):
        task.convert({"question": "q", "answer": "#### many"})


# ---------------------------------------------------------------------------- MATH


@pytest.mark.parametrize(
    ("response", "parsed"),
    [
        ("so the answer is \\boxed{\\frac{\\sqrt{3}}{2}}.", "\\frac{\\sqrt{3}}{2}"),
        ("\\boxed{1} no wait, \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3,\\frac{\\pi}{2})"),
        ("The answer is \\fbox{42}", "42"),
        ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}"),
        ("\\boxed{\\tfrac12}", "\\frac{1}{2}"),
        ("\\boxed{5\\text{ cm}}", "5"),
        ("\\boxed{90^\\circ}", "90"),
        ("\\boxed{90^{\\circ}}", "90"),
        ("\\boxed{\\$18.00}", "18"),
        ("\\boxed{1,\\!000}", "1000"),
        ("\\boxed{x = 3}", "3"),
        ("\\boxed{\\{1, 2\\}}", "\\{1,2\\}"),
        ("\\boxed{\\text{(B)}}", "(B)"),
        ("\\boxed 7$", "7"),
        ("cut off: \\boxed{\\frac{1}{2}", None),
        ("no box, the answer is 5", None),
        ("\\boxed{}", None),
    ],
)
def test_math_parse(response, parsed):
    assert get_task("math").parse(response) == parsed


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("0.5", "\\frac{1}{2}"),
        ("\\frac12", "1/2"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
        ("\\sqrt[3]{8}", "2"),
        ("5\\text{ cm}", "5"),
        ("10\\%", "10"),
        ("12.0", "12"),
        ("2\\pi", "\\pi \\cdot 2"),
        ("\\frac{x^2-1}{x-1}", "x+1"),
        ("(x+1)^2", "x^2+2x+1"),
        ("(1, \\frac{1}{2})", "(1,0.5)"),
        ("\\left[ 2, 3 \\right)", "[2,3)"),
        ("y = 2x+1", "1+2x"),
    ],
)
def test_math_equivalent_answers(a, b):
    task = get_task("math")
    assert task.answers_equal(a, b)
    assert task.answers_equal(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("\\frac{1}{3}", "0.33"),
        ("\\pi", "3.14159265359"),
        ("x+1", "x-1"),
        ("(1,2)", "[1,2]"),
        ("(1,2)", "(2,1)"),
        ("2", "-2"),
        ("\\frac{1}{0}", "\\frac{1}{0}x"),
    ],
)
def test_math_different_answers(a, b):
    assert not get_task("math").answers_equal(a, b)


def test_math_symbolic_check_refuses_expensive_inputs_quickly():
    task = get_task("math")
    started = time.monotonic()
    assert not task.answers_equal("2^{10^{10}}", "1")
    assert not task.answers_equal("(x+y+z)^{1000}", "1")
    assert not task.answers_equal("(a+b)^{99}" * 18, "1")  # would never finish if expanded
    assert task.answers_equal("(a+b)^{99}" * 18, "((b+a)^{99})^{18}")
    assert not task.answers_equal("((((x^{99})^{99})^{99})^{99})^{99}", "x")
    assert not task.answers_equal("1+" * 150 + "1", "301")  # longer than the symbolic limit
    assert task.answers_equal("1+" * 150 + "1", "1+" * 150 + "1")  # equal strings still equal
    assert not task.answers_equal("__import__('os')", "0")
    assert time.monotonic() - started < 5


def test_math_grading_never_counts_unparseable():
    task = get_task("math")
    assert task.is_correct(task.parse("\\boxed{\\dfrac{1}{2}}"), "\\frac{1}{2}")
    assert not task.is_correct(task.parse("I give up"), "\\frac{1}{2}")
    assert not task.is_correct(None, "")


def test_math_reference_is_the_last_boxed_of_the_solution():
    task = get_task("math")
    record = {"problem": "Find x.", "solution": "We get $\\boxed{\\frac{1}{2}}$.", "level": "1"}
    assert task.convert(record) == ("Find x.", "\\frac{1}{2}")
    assert task.convert({"question": "q", "answer": " 7 "}) == ("q", "7")
    with pytest.raises(ValueError, match="no \\\\boxed"):
        task.convert({"problem": "q", "solution": "It is 7."})


def test_math_level_filter(tmp_path):
    records = [
        {"problem": f"p{i}", "solution": f"\\boxed{{{i}}}", "level": f"Level {i % 5 + 1}"}
        for i in range(40)
    ] + [{"problem": "odd", "solution": "\\boxed{0}", "level": "Level ?"}]
    source = str(write_jsonl(tmp_path / "math.jsonl", records))
    task = get_task("math")
    easy = task.load("train", 12, seed=0, source=source, levels={1, 2, 3})
    assert {int(p.answer) % 5 + 1 for p in easy} <= {1, 2, 3}
    assert len(task.load("train", 20, seed=0, source=source)) == 20
    with pytest.raises(DatasetError, match="only 12 are available"):
        task.load("eval", 13, seed=0, source=source, levels=[1, 2, 3])


def test_math_task_with_levels_keeps_only_those(tmp_path):
    records = [
        {"problem": f"p{i}", "solution": f"\\boxed{{{i}}}", "level": f"Level {i % 5 + 1}"}
        for i in range(40)
    ]
    source = str(write_jsonl(tmp_path / "math.jsonl", records))
    task = get_task("math", levels=[4, 5])
    problems = task.load("train", 8, seed=0, source=source)  # 16 records, half of them train
    assert {int(p.answer) % 5 + 1 for p in problems} == {4, 5}
    with pytest.raises(DatasetError, match=r"only 8 are available .*keeping levels 4, 5"):
        task.load("eval", 9, seed=0, source=source)
    with pytest.raises(ValueError, match="levels are only for the math task"):
        get_task("gsm8k", levels=[1])


# ---------------------------------------------------------------------------- MMLU


@pytest.mark.parametrize(
    ("response", "parsed"),
    [
        ("Mitochondria make ATP. The answer is (B).", "B"),
        ("The answer is C", "C"),
        ("Answer: D", "D"),
        ("The correct answer is: **A**", "A"),
        ("Option A is wrong, option B is wrong. The correct option is C.", "C"),
        ("Choice A is incorrect and choice D is correct, so I pick... \\boxed{D}", "D"),
        ("\\boxed{\\text{(C)}}", "C"),
        ("After weighing them, **B** is best.", "B"),
        ("It must be the second one.\n\n(B)", "B"),
        ("A) is wrong and B) is wrong, the answer is (D) not (C)", "D"),
        ("A good answer is (B)", "B"),
        ("Answer: A careful reading of the options gives (C).", "C"),
        ("The answer is A good deal larger, so (D)", "D"),
        ("The answer is A because the others are wrong.", "A"),
        ("The answer is A.", "A"),
        ("The answer is (A) as shown", "A"),
        ("The answer is a bit unclear.", None),
        ("Answer: Because of thermodynamics.", None),
        ("I am not sure.", None),
    ],
)
def test_mmlu_parse(response, parsed):
    assert get_task("mmlu").parse(response) == parsed


def test_mmlu_grading_and_question_formatting():
    task = get_task("mmlu")
    record = {"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1}
    question, answer = task.convert(record)
    assert question == "2+2?\n\nA) 3\nB) 4\nC) 5\nD) 6"
    assert answer == "B"
    assert task.convert({**record, "answer": "c"})[1] == "C"
    assert task.is_correct("B", "B") and not task.is_correct("C", "B")
    assert not task.is_correct(task.parse("no idea"), "B")
    for bad in ({**record, "answer": 4}, {**record, "answer": "AB"}, {**record, "choices": ["x"]}):
        with pytest.raises(ValueError):
            task.convert(bad)


def test_mmlu_loads_parquet_as_the_hub_stores_it(tmp_path):
    rows = [
        {"question": f"q{i}", "subject": "s", "choices": ["a", "b", "c", "d"], "answer": i % 4}
        for i in range(30)
    ]
    source = str(write_parquet(tmp_path / "mmlu.parquet", rows))
    task = get_task("mmlu")
    train = task.load("train", 15, seed=1, source=source)
    assert {p.answer for p in train} <= set("ABCD")
    assert train[0].question.endswith("A) a\nB) b\nC) c\nD) d")


# ---------------------------------------------------------------------------- custom


def test_custom_parse_and_grading():
    task = get_task("custom")
    assert task.parse("The capital is \\boxed{\\text{Paris}}.") == "paris"
    assert task.parse("\\boxed{\\$1,200}") == "1200"
    assert task.parse("so 42") == "42"
    assert task.is_correct(task.parse("\\boxed{ PARIS. }"), "Paris")
    assert task.is_correct(task.parse("\\boxed{1,200.0}"), "1200")
    assert not task.is_correct(task.parse("\\boxed{Lyon}"), "Paris")
    assert not task.is_correct(task.parse("nothing"), "Paris")


def test_custom_needs_a_source():
    with pytest.raises(DatasetError, match="custom task needs a source"):
        get_task("custom").load("train", 1, seed=0)


# ---------------------------------------------------------------------------- loading


def test_jsonl_fixture_loads_and_splits_into_disjoint_halves():
    task = get_task("custom")
    source = str(DATA / "custom.jsonl")
    train = task.load("train", 10, seed=0, source=source)
    evaluation = task.load("eval", 10, seed=0, source=source)
    assert all(isinstance(p, Problem) for p in train + evaluation)
    assert not {p.question for p in train} & {p.question for p in evaluation}
    assert {p.id for p in train}.isdisjoint(p.id for p in evaluation)
    assert train == task.load("train", 10, seed=0, source=source)
    assert train != task.load("train", 10, seed=1, source=source)
    assert train[:4] == task.load("train", 4, seed=0, source=source)
    with pytest.raises(DatasetError, match="asked for 11 train problems but only 10"):
        task.load("train", 11, seed=0, source=source)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "q7"}', "missing field 'answer'"),
        ('{"question": "q7", "answer": 7}', "field 'answer' must be a string, not int"),
        ('{"question": "q7", "answer": "7"', "invalid JSON"),
        ('["q7", "7"]', "expected an object, got list"),
        ('{"question": "  ", "answer": "7"}', "field 'question' is empty"),
    ],
)
def test_malformed_jsonl_line_is_reported_with_file_and_line(tmp_path, line, message):
    good = [json.dumps({"question": f"q{i}", "answer": str(i)}) for i in range(1, 7)]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join([*good[:3], "", *good[3:], line]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        get_task("custom").load("train", 1, seed=0, source=str(path))
    assert str(caught.value).startswith(f"{path}:8: ")
    assert message in str(caught.value)


def test_gsm8k_jsonl_error_names_the_line(tmp_path):
    path = write_jsonl(
        tmp_path / "gsm.jsonl",
        [{"question": "a", "answer": "#### 1"}, {"question": "b", "answer": "#### x"}],
    )
    with pytest.raises(DatasetError, match=r"gsm\.jsonl:2: answer 'x' is not a number"):
        get_task("gsm8k").load("eval", 1, seed=0, source=str(path))


def test_json_array_and_duplicates(tmp_path):
    records = [{"question": f"q{i % 8}", "answer": "#### 1"} for i in range(16)]
    path = tmp_path / "gsm.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    task = get_task("gsm8k")
    assert len(task.load("train", 4, seed=0, source=str(path))) == 4
    with pytest.raises(DatasetError, match="only 4 are available"):
        task.load("train", 5, seed=0, source=str(path))


def test_directory_with_train_and_test_files_uses_them(tmp_path):
    write_parquet(
        tmp_path / "train-00000-of-00001.parquet",
        [{"question": f"t{i}", "answer": f"#### {i}"} for i in range(8)]
        + [{"question": "shared", "answer": "#### 0"}],
    )
    write_jsonl(
        tmp_path / "test.jsonl",
        [{"question": f"e{i}", "answer": str(i)} for i in range(5)]
        + [{"question": "shared", "answer": "0"}],
    )
    task = get_task("gsm8k")
    train = task.load("train", 8, seed=0, source=str(tmp_path))
    evaluation = task.load("eval", 6, seed=0, source=str(tmp_path))
    assert {p.question for p in train} == {f"t{i}" for i in range(8)}
    assert {p.question for p in evaluation} == {f"e{i}" for i in range(5)} | {"shared"}
    with pytest.raises(DatasetError, match="only 8 are available"):
        task.load("train", 9, seed=0, source=str(tmp_path))


def test_directory_without_split_names_is_one_pool(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"question": f"a{i}", "answer": "1"} for i in range(5)])
    write_jsonl(tmp_path / "b.jsonl", [{"question": f"b{i}", "answer": "2"} for i in range(5)])
    task = get_task("custom")
    train = task.load("train", 5, seed=0, source=str(tmp_path))
    evaluation = task.load("eval", 5, seed=0, source=str(tmp_path))
    assert {p.question for p in train} | {p.question for p in evaluation} == {
        f"{x}{i}" for x in "ab" for i in range(5)
    }


def test_directory_with_only_one_split_is_an_error(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": "1"}])
    with pytest.raises(DatasetError, match="no eval records"):
        get_task("custom").load("train", 1, seed=0, source=str(tmp_path))


def test_bad_sources(tmp_path):
    task = get_task("custom")
    with pytest.raises(DatasetError, match="no such file"):
        task.load("train", 1, seed=0, source=str(tmp_path / "missing.jsonl"))
    with pytest.raises(DatasetError, match="neither a local path nor"):
        task.load("train", 1, seed=0, source="not a dataset id!")
    (tmp_path / "data.csv").write_text("question,answer\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="unsupported file type"):
        task.load("train", 1, seed=0, source=str(tmp_path / "data.csv"))
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match="cannot read parquet"):
        task.load("train", 1, seed=0, source=str(tmp_path / "broken.parquet"))
    with pytest.raises(ValueError, match="split must be one of"):
        task.load("test", 1, seed=0, source=str(DATA / "custom.jsonl"))


def test_hub_ids_go_to_datasets_with_the_task_splits_and_config(monkeypatch):
    calls = []

    def load_dataset(path, name=None, *, split):
        calls.append((path, name, split))
        if path == "gone/away":
            raise FileNotFoundError("Couldn't find a dataset script")
        return [{"question": f"{split}-q{i}", "answer": f"#### {i}"} for i in range(3)]

    # a stand-in module: tests never reach the hub, and `datasets` is imported only on this path
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    gsm8k = get_task("gsm8k")
    problems = gsm8k.load("eval", 3, seed=0)
    assert {p.question for p in problems} == {f"test-q{i}" for i in range(3)}
    assert calls == [("openai/gsm8k", "main", "train"), ("openai/gsm8k", "main", "test")]

    calls.clear()
    gsm8k.load("train", 1, seed=0, source="someone/gsm-copy:extra")
    assert calls == [("someone/gsm-copy", "extra", "train"), ("someone/gsm-copy", "extra", "test")]

    calls.clear()
    with pytest.raises(DatasetError, match=r"row 1: field 'choices'"):
        get_task("mmlu").load("train", 1, seed=0)
    assert calls == [("cais/mmlu", "all", "validation"), ("cais/mmlu", "all", "test")]

    with pytest.raises(DatasetError, match="cannot load split 'train' of 'gone/away'"):
        gsm8k.load("train", 1, seed=0, source="gone/away")


def test_jsonl_lines_are_split_by_json_lines_rules_not_unicode_line_breaks(tmp_path):
    """U+2028 and U+2029 may stand unescaped inside a JSON string (json.dumps with
    ensure_ascii=False writes them so); str.splitlines() would break such a line in two."""
    rows = [{"question": f"q{i}\u2028line two\u2029", "answer": str(i)} for i in range(4)]
    path = tmp_path / "data.jsonl"
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    problems = get_task("custom").load("train", 2, seed=0, source=str(path))
    assert all("\u2028line two\u2029" in p.question for p in problems)
