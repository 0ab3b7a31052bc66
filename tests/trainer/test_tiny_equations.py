"""The tiny-equations task and builtin:tiny-equations as the package ships it: the problem space's
two halves (the model never trained on a problem a Society draws), the formats the model was
taught, its tokenizer, the shipped files, the recipe's first steps bit for bit, and the band:
the critic's verdict gate and a debate that beats the majority vote (docs/method.md)."""

from __future__ import annotations

import asyncio
import json
import math
import random
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from society_trainer.models import builtin, resolve_model
from society_trainer.tasks import DatasetError, get_task
from society_trainer.tasks import equations as eq

# ----------------------------------------------------------------------------------- the task


def test_the_two_halves_split_the_problem_space():
    taught, drawn = set(eq.space("builtin")), set(eq.space("society"))
    assert len(taught) + len(drawn) == 8 * 30 * 10 and not taught & drawn
    assert 1100 < len(drawn) < 1300  # about half
    assert all(eq.half(a, b, x) == "society" for a, b, x in drawn)


def test_a_society_draws_only_from_its_half_train_and_eval_disjoint():
    task = get_task("tiny-equations")
    drawn = {eq.question(a, b, x): str(x) for a, b, x in eq.space("society")}
    for seed in (0, 1, 12345):
        train, evaluation = task.load("train", 300, seed), task.load("eval", 300, seed)
        assert not {p.question for p in train} & {p.question for p in evaluation}
        for problem in train + evaluation:
            assert drawn[problem.question] == problem.answer
            split = "train" if problem in train else "eval"
            assert problem.id.startswith(f"tiny-equations-{split}-")
    assert task.load("eval", 10, 0) == task.load("eval", 300, 0)[:10]  # a larger sample extends
    with pytest.raises(DatasetError, match="per split"):
        task.load("eval", 1000, 0)
    with pytest.raises(DatasetError, match="generated"):
        task.load("eval", 10, 0, source="x.jsonl")


def test_the_recipe_trains_only_on_problems_no_society_draws():
    from society_trainer.models.tiny_equations import KINDS, Rows

    drawn = {eq.question(a, b, x) for a, b, x in eq.space("society")}
    rows = Rows(seed=5)
    seen = 0
    for i in range(600):
        text = "".join(t for t, _ in rows.row(KINDS[i % 3]))  # gen, summ, critic: with questions
        for question in {line for line in text.split("\n") if line.startswith("Solve ")}:
            assert question.removeprefix("<|im_start|>user\n") not in drawn
            seen += 1
    assert seen >= 600


def test_parse_and_grade():
    task = get_task("tiny-equations")
    assert task.parse("7") == "7"
    assert task.parse("You said 5. 7*5 is 35+12 is 47, c=61: 4 6 differ, 7 1 differ, no.\n") == "1"
    assert task.parse("One says 7. ...yes.\nAnswer 7.") == "7"
    assert task.parse("nothing") is None
    assert task.is_correct("7", "7") and not task.is_correct(None, "7")


def test_the_taught_formats():
    assert eq.question(7, 12, 7) == "Solve 7x+12=61."
    assert eq.summary_response(["7", "9", "oops"]) == (
        "One says 7. Another says 9. A third says nothing."
    )
    assert eq.critic_response(7, 12, 7, 5, [7, 9]) == (
        "You said 5. 7*5 is 35+12 is 47, c=61: 4 6 differ, 7 1 differ, no.\n"
        "One says 7. 7*7 is 49+12 is 61, c=61: 6 6 same, 1 1 same, yes.\n"
        "Answer 7."
    )
    assert eq.critic_response(7, 12, 7, 5, [8, None]).endswith("None fits. Answer 7.")
    assert eq.critic_response(7, 12, 7, 7, [8, 9]).count("\n") == 1  # its own answer fits
    assert eq.digits_verdict(16, 13) == ": 1 1 same, 6 3 differ, no."
    prompt = eq.PROMPTS.critic.format(question="Solve 2x+1=5.", own_answer="2", others="One 2.")
    assert prompt == "Solve 2x+1=5.\nYou said 2.\nOne 2.\nCheck."


def test_the_tokenizer_makes_numbers_and_keys_one_token_and_round_trips():
    from society_trainer.models.tokenizer_numbers import PHRASES, build_tokenizer

    tokenizer = build_tokenizer()
    assert len(tokenizer) == 674
    for n in range(300):
        assert len(tokenizer(str(n), add_special_tokens=False)["input_ids"]) == 1
    for phrase in PHRASES:
        pieces = [
            tokenizer.decode([i])
            for i in tokenizer(f"7{phrase}12", add_special_tokens=False)["input_ids"]
        ]
        assert phrase in pieces
    rng = random.Random(0)
    for _ in range(300):
        text = "".join(rng.choice("0123456789 xSolveAgent:\n.,+=*isyes") for _ in range(40))
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


# ------------------------------------------------------------------------------- shipped files


def test_the_shipped_files_match_their_checksums_and_record():
    path = Path(resolve_model("builtin:tiny-equations"))
    assert path == builtin.WEIGHTS / "tiny-equations"
    listed = {name for _, name in builtin.read_checksums(path / builtin.CHECKSUMS)}
    assert listed == {p.name for p in path.iterdir()} - {builtin.CHECKSUMS}
    assert {"config.json", "model.safetensors", "tokenizer.json", builtin.RECORD} <= listed
    record = json.loads((path / builtin.RECORD).read_text())
    assert record["recipe"] == builtin.BUILTINS["tiny-equations"][0]
    assert sum(p.stat().st_size for p in path.iterdir()) < 5_000_000


# The recipe's state hash after its first 10 steps, by the CPU's vendor and the vector kernels
# torch reports: MKL takes other code paths on AMD and Intel CPUs of the same ISA, so each pair
# has its own bits. AMD's are the research script's (recipe3.py, where the shipped build ran);
# Intel's were measured on the project's Xeon and on CI's machine (2026-12-03), and catch a
# change to the recipe there.
STEP_10_BITS = {
    ("AuthenticAMD", "AVX512"): "175a5d13e8bf9947",
    ("GenuineIntel", "AVX512"): "07bf5fb6a0e94b13",
}


def cpu_vendor() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    vendors = [
        line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "vendor_id" in line
    ]
    return vendors[0] if vendors else "unknown"


def test_the_recipe_reproduces_the_research_chain_bit_for_bit():
    """The recipe's first 10 steps give the bits that its first 10 gave before on this kind of
    CPU: on AMD with AVX-512 kernels, the research script's (stage O from scratch;
    docs/research/tiny-equations). Another vendor or ISA gives other bits (docs/method.md)."""
    import torch

    from society_trainer.models import tiny_equations

    kernels = (cpu_vendor(), torch.backends.cpu.get_cpu_capability())
    if kernels not in STEP_10_BITS:
        pytest.skip(f"no recorded bits for {kernels[0]} CPUs with {kernels[1]} kernels")
    threads = torch.get_num_threads()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            first = (replace(tiny_equations.STAGES[0], stop=10),)
            model = tiny_equations.build(Path(scratch) / "m", first)
            from transformers import AutoModelForCausalLM

            built = AutoModelForCausalLM.from_pretrained(model)
            assert tiny_equations.state_hash(built) == STEP_10_BITS[kernels]
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------- band


def verdict_gate(model_dir: Path, rows: int = 40) -> tuple[float, float, int, int]:
    """The critic's verdict on critic rows of the SOCIETY half (never trained on; the rows of
    research's verdictprobe6.py, data seed 999): each check line teacher-forced up to `c=61`, the
    model writes the digit comparison greedily, and P(fits) = P(", yes.") / P(", yes." or
    ", no.") at its verdict. Mean P(fits) on the fitting lines and on the others, and their
    counts."""
    import re

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from society_trainer.models.tiny_equations import Rows

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    source = Rows(999)
    source.pool = eq.space("society")
    yes = tokenizer(", yes.", add_special_tokens=False)["input_ids"][0]
    no = tokenizer(", no.", add_special_tokens=False)["input_ids"][0]
    fitting, other = [], []
    for _ in range(rows):
        text = "".join(t for t, _ in source.row("critic"))
        start = text.rfind("assistant\n")
        for line in re.finditer(r" is (\d+), c=(\d+)", text[start:]):
            ids = tokenizer(text[: start + line.end()], add_special_tokens=False)["input_ids"]
            p_fits = 0.0
            with torch.no_grad():
                for _ in range(20):
                    p = torch.softmax(model(torch.tensor([ids])).logits[0, -1], -1)
                    token = int(p.argmax())
                    if token in (yes, no):
                        p_fits = (p[yes] / (p[yes] + p[no])).item()
                        break
                    ids.append(token)
            (fitting if line.group(1) == line.group(2) else other).append(p_fits)
    return sum(fitting) / len(fitting), sum(other) / len(other), len(fitting), len(other)


def debate(model: str, size: int, seed: int) -> list:
    """The demo's debate (examples/tiny.yaml) on the first `size` eval problems of seed `seed`:
    3 agents, 2 rounds, the summariser on, T=1, top_p 0.9, maxTokens 160, through the product's
    Debate and TransformersGenerator (seeded per request: the same records every run)."""
    from society_trainer.config import AgentModels, ModelRef, SamplingConfig, TransformersBackend
    from society_trainer.debate import Debate, DebateSetup
    from society_trainer.generation.transformers import TransformersGenerator

    task = get_task("tiny-equations")
    base = ModelRef(name="base")
    setup = DebateSetup(
        task=task,
        prompts=task.prompts,
        agents=[AgentModels(generation=base, critic=base)] * 3,
        rounds=2,
        summarize=True,
        sampling=SamplingConfig(temperature=1.0, top_p=0.9, max_tokens=160),
        seed=seed,
    )
    generator = TransformersGenerator(
        TransformersBackend(base_model=Path(model), batch_size=32, dtype="float32")
    )

    async def run() -> list:
        try:
            with tempfile.TemporaryDirectory() as scratch:
                return await Debate(setup, generator).run(
                    task.load("eval", size, seed), Path(scratch) / "eval.jsonl", "eval"
                )
        finally:
            await generator.aclose()

    return asyncio.run(run())


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 30 s of CPU; minutes of wall on a loaded 2-core box
def test_the_shipped_model_passes_the_verdict_gate_and_debate_beats_majority():
    from society_trainer.voting import majority

    model = resolve_model("builtin:tiny-equations")
    # Measured on the shipped weights: P(fits) 0.99994 on 29 fitting lines, 0.061 on 49 others.
    on_fitting, on_other, n_fitting, n_other = verdict_gate(Path(model))
    assert (n_fitting, n_other) == (29, 49)
    assert on_fitting > 0.9 and on_other < 0.1, (on_fitting, on_other)

    # Measured (seed 0, voting.py's hashed tie-break): majority 24/128 (18.8% ± 3.4), debate
    # 66/128 (51.6% ± 4.4), +9.5 SE (seed 1: 33 and 63, +6.1 SE). With the lowest-agent
    # tie-break it replaced: 33 and 65, +6.5 SE.
    task = get_task("tiny-equations")
    records = debate(str(model), 128, seed=0)
    voted = sum(
        task.is_correct(majority([t.answer for t in r.rounds[0]], task.answers_equal), r.reference)
        for r in records
    )
    debated = sum(task.is_correct(r.majority, r.reference) for r in records)
    p = voted / len(records)
    stderr = math.sqrt(p * (1 - p) / len(records))
    assert (debated - voted) / len(records) >= 2 * stderr, (voted, debated)
    assert 12 <= voted <= 40 and 50 <= debated <= 82, (voted, debated)  # the band, about +-3 SE
