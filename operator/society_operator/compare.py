"""`society compare FILE`: the paper's Table 1 for any Society, on this machine.

Seven arms, each a Society derived from FILE (N = spec.agents, M = spec.debate.rounds):

    Base              the base model alone, one answer (agent 0's round-1 answers)
    Majority          N agents, one round, majority vote (the round-1 answers)
    Debate            N agents, M rounds (the verdict)
    STaR              mode star, 1 round: one model finetuned on its own correct first answers
    Single-agent FT   mode single-agent, M rounds: one model finetuned on all the debate's data
    Majority-FT       mode single-agent, 1 round: one model finetuned on its majority-agreeing
                      samples
    Multiagent FT     mode multiagent, M rounds: the paper's method

The three arms without finetuning are the base society's debate (iteration 0 of the Multiagent
FT run) read three ways, as the paper's Table 1 relates them; the finetuned arms each run through
`society run`'s executor (local/), for L iterations and every seed. Arms that are the same
Society (at M = 1, Single-agent FT and Majority-FT) share one run. Every iteration's eval debate
is then analysed by `society-trainer analyse` (society_trainer/analysis.py): accuracy ± SE,
consensus, embedding (or lexical) diversity and likelihood diversity. Runs and analyses are kept
under --artifacts, so an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from society_trainer.config import AnalysisConfig, TransformersBackend

from .api import Society
from .build.steps import debate_config, layout
from .local import LocalRun, LocalRunError, Progress
from .local.process import local_embedding_model, run_command, trainer_executable
from .settings import Settings


class StepLines(Progress):
    """One line per finished step on stderr: a comparison runs long and unattended."""

    def job_done(self, job, record) -> None:
        from .local.report import job_line  # tqdm and the trainer's results: only when run

        print(f"  {job_line(job, record)}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Arm:
    name: str
    mode: str  # the run it reads: its spec.mode ...
    one_round: bool  # ... and whether that run debates in one round (else M)
    view: str  # which of the analysis' readings: alone, first (round-1 vote), final
    finetuned: bool


ARMS = (
    Arm("Base", "multiagent", False, "alone", False),
    Arm("Majority", "multiagent", False, "first", False),
    Arm("Debate", "multiagent", False, "final", False),
    Arm("STaR", "star", True, "final", True),
    Arm("Single-agent FT", "single-agent", False, "final", True),
    Arm("Majority-FT", "single-agent", True, "final", True),
    Arm("Multiagent FT", "multiagent", False, "final", True),
)


@dataclass(frozen=True)
class Cell:
    """One arm at one iteration, pooled over the seeds."""

    questions: int
    correct: int
    consensus: float | None
    diversity: float | None
    likelihood: float | None

    @property
    def accuracy(self) -> float:
        return self.correct / self.questions if self.questions else 0.0

    @property
    def stderr(self) -> float:
        p, n = self.accuracy, self.questions
        return math.sqrt(p * (1 - p) / n) if n else 0.0


def sized(base: Society, eval_size: int | None, train_size: int | None) -> Society:
    """FILE's Society with other split sizes (a smaller comparison of the same Society)."""
    manifest = base.to_manifest()
    task = manifest["spec"]["task"]
    task["evalSize"] = eval_size or task["evalSize"]
    task["trainSize"] = train_size or task["trainSize"]
    manifest.pop("status", None)
    return Society.model_validate(manifest)


def arm_society(base: Society, arm: Arm, seed: int, iterations: int) -> Society:
    """The Society an arm runs: FILE's, with the arm's mode and rounds, this seed, L iterations.
    Its name says mode, rounds and seed (and the split sizes, so that two sizes never share a
    run directory)."""
    manifest = base.to_manifest()
    spec = manifest["spec"]
    rounds = 1 if arm.one_round else base.spec.debate.rounds
    sizes = f"e{base.spec.task.evalSize}t{base.spec.task.trainSize}"
    manifest["metadata"] = {"name": f"{base.metadata.name}-{sizes}-{arm.mode}-m{rounds}-s{seed}"}
    spec["mode"] = arm.mode
    spec["debate"]["rounds"] = rounds
    spec["task"]["seed"] = seed
    spec["finetune"]["iterations"] = iterations
    manifest.pop("status", None)
    return Society.model_validate(manifest)


def analysis_config(
    society: Society, artifacts: Path, iteration: int, likelihood_questions: int
) -> AnalysisConfig:
    """What `society-trainer analyse` reads for one iteration of one run."""
    name = society.spec.model.name
    base = str(Path(name).expanduser().resolve()) if name.startswith(("/", ".", "~")) else name
    backend = TransformersBackend(
        base_model=Path(base),
        base_model_revision=society.spec.model.revision,
        dtype=society.spec.model.dtype,
        device="auto",
    )
    where = layout(society, Settings(artifacts_mount=str(artifacts)))
    debate = debate_config(society, iteration, where, backend)
    return AnalysisConfig(
        debate=debate.model_copy(update={"splits": ["eval"]}),
        embedding_model=local_embedding_model(),
        likelihood_questions=likelihood_questions,
        output=where.root / "analysis" / f"iteration-{iteration}.json",
    )


def analyse(config: AnalysisConfig) -> dict:
    """The analysis of one iteration, run once (its result is kept beside the run)."""
    if not config.output.exists():
        config.output.parent.mkdir(parents=True, exist_ok=True)
        path = config.output.with_suffix(".config.json")
        path.write_text(config.model_dump_json(indent=2) + "\n")
        log = config.output.with_suffix(".log")
        command = [trainer_executable(), "analyse", "--config", str(path)]
        code = run_command(command, log, lambda: None, threads=1)  # small batches, shared cores
        if code != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise LocalRunError(f"analysis of {config.debate.output_dir} failed: {tail[0]}")
    return json.loads(config.output.read_text())


def pool(readings: list[dict]) -> Cell:
    """Seeds pooled: accuracy over all their questions; the other measures averaged."""

    def mean(key: str) -> float | None:
        values = [r[key] for r in readings if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    return Cell(
        questions=sum(r["questions"] for r in readings),
        correct=sum(r["correct"] for r in readings),
        consensus=mean("consensus"),
        diversity=mean("diversity"),
        likelihood=mean("likelihood"),
    )


def compare(
    base: Society,
    seeds: list[int],
    iterations: int,
    artifacts: Path,
    progress: Progress | None = None,
    likelihood_questions: int = 64,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> tuple[dict[str, list[Cell]], str]:
    """Every arm's cells, iteration by iteration (one for the arms without finetuning), and
    how diversity was measured."""
    artifacts = artifacts.resolve()
    readings: dict[tuple[str, int], list[dict]] = {}
    methods: set[str] = set()
    runs: dict[str, dict[int, dict]] = {}  # run name -> iteration -> analysis
    for seed in seeds:
        for arm in ARMS:
            society = arm_society(base, arm, seed, iterations)
            name = society.metadata.name
            if name not in runs:
                say(f"{name}:")
                run = LocalRun(society, artifacts, progress)
                evaluated = {e.iteration for e in run.status.iterations if e.accuracy is not None}
                # A run that went further (a comparison at a larger L) is read, not rerun.
                done = evaluated >= set(range(iterations + 1))
                status = run.status if done else run.run()
                if not done and status.phase != "Succeeded":
                    failed = next((c for c in status.conditions if c.type == "Failed"), None)
                    raise LocalRunError(f"{name}: {failed.message if failed else status.phase}")
                runs[name] = {
                    i: analyse(analysis_config(society, artifacts, i, likelihood_questions))
                    for i in range(iterations + 1)
                }
            for i in range(iterations + 1 if arm.finetuned else 1):
                reading = runs[name][i][arm.view]
                readings.setdefault((arm.name, i), []).append(reading)
                if reading.get("diversity") is not None:  # one agent alone has none
                    methods.add(reading["diversityMethod"])
    cells = {
        arm.name: [
            pool(readings[arm.name, i]) for i in range(iterations + 1 if arm.finetuned else 1)
        ]
        for arm in ARMS
    }
    return cells, ", ".join(sorted(methods))


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(cells: dict[str, list[Cell]]) -> list[str]:
    """Markdown: Table 1 (each arm after its last iteration), then every iteration."""
    header = "| consensus | diversity | likelihood diversity |"
    lines = [
        "| arm | iterations | accuracy % | " + header.removeprefix("| "),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arm in ARMS:
        last = len(cells[arm.name]) - 1
        lines.append(f"| {arm.name} | {last} | " + _cells(cells[arm.name][last]))
    lines += ["", "| iteration | " + " | ".join(a.name for a in ARMS if a.finetuned) + " |"]
    lines.append("|---:|" + "---:|" * sum(a.finetuned for a in ARMS))
    for i in range(len(cells[ARMS[-1].name])):
        row = [_accuracy(cells[a.name][i]) for a in ARMS if a.finetuned]
        lines.append(f"| {i} | " + " | ".join(row) + " |")
    return lines


def _accuracy(cell: Cell) -> str:
    return f"{100 * cell.accuracy:.1f} ± {100 * cell.stderr:.1f}"


def _cells(cell: Cell) -> str:
    values = [_number(cell.consensus), _number(cell.diversity), _number(cell.likelihood)]
    return f"{_accuracy(cell)} | " + " | ".join(values) + " |"


# A panel of a plot: its title, a cell's value (None: no point), a cell's error bar (or None).
Panel = tuple[str, Callable[[Cell], float | None], Callable[[Cell], float] | None]


def _accuracy_panel() -> Panel:
    return ("accuracy %", lambda c: 100 * c.accuracy, lambda c: 100 * c.stderr)


def plot(
    cells: dict[str, list[Cell]],
    method: str,
    path: Path,
    title: str,
    panels: tuple[Panel, ...] | None = None,
    arms: tuple[Arm, ...] = ARMS,
) -> Path | None:
    """One panel per measure against the iteration (by default accuracy, diversity and
    likelihood diversity), one line per finetuned arm and a level line per arm without
    finetuning. None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator

    panels = panels or (
        _accuracy_panel(),
        (f"diversity ({method})", lambda c: c.diversity, None),
        ("likelihood diversity (NLL/token)", lambda c: c.likelihood, None),
    )
    figure, axes = pyplot.subplots(1, len(panels), figsize=(13, 3.8), dpi=80)
    for axis, (label, value, error) in zip(axes, panels, strict=True):
        for index, arm in enumerate(arms):  # an arm keeps its colour in every panel
            series = cells[arm.name]
            points = [(i, value(c)) for i, c in enumerate(series) if value(c) is not None]
            if not points:
                continue
            if arm.finetuned:
                xs, ys = zip(*points, strict=True)
                errors = [error(series[i]) for i in xs] if error else None
                axis.errorbar(
                    xs, ys, yerr=errors, marker="o", capsize=3, label=arm.name, color=f"C{index}"
                )
            else:
                axis.axhline(
                    points[0][1],
                    linestyle="--",
                    linewidth=1,
                    label=arm.name,
                    color={"Base": "grey", "Majority": "black"}.get(arm.name, "brown"),
                )
        axis.set_xlabel("finetuning iteration")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(label, fontsize=10)
    axes[0].legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    return path


# A `society run` read as two arms, iteration by iteration: the round-1 vote and the verdict.
RUN_ARMS = (
    Arm("Majority (round 1)", "multiagent", False, "first", True),
    Arm("Debate", "multiagent", False, "final", True),
)


def run_cells(society: Society, artifacts: Path) -> tuple[dict[str, list[Cell]], str]:
    """A finished `society run` of `society`, iteration by iteration: the majority vote of the
    eval debate's round-1 answers (read from its transcript, lexical diversity) and the debate's
    verdict (the run's status: accuracy, consensus and diversity as its table shows them)."""
    from society_trainer.analysis import first_round
    from society_trainer.evaluation import evaluate
    from society_trainer.tasks import get_task
    from society_trainer.transcript import read_transcript

    status = LocalRun(society, artifacts).status
    cells: dict[str, list[Cell]] = {arm.name: [] for arm in RUN_ARMS}
    methods = set()
    for entry in sorted(status.iterations, key=lambda e: e.iteration):
        if entry.accuracy is None:
            continue
        debate = analysis_config(society, artifacts, entry.iteration, 0).debate
        task = get_task(debate.task.name, debate.task.max_value, debate.task.levels)
        records = read_transcript(debate.output_dir / "eval" / "transcript.jsonl")
        first = evaluate([first_round(r, task) for r in records], task, None)
        final = evaluate(records, task, None)
        cells[RUN_ARMS[0].name].append(
            Cell(first.questions, first.correct, first.consensus, None, None)
        )
        cells[RUN_ARMS[1].name].append(
            Cell(final.questions, final.correct, entry.consensus, entry.diversity, None)
        )
        if entry.diversityMethod:
            methods.add(entry.diversityMethod)
    return cells, ", ".join(sorted(methods)) or "-"


def run_table(cells: dict[str, list[Cell]]) -> list[str]:
    """Per iteration: the round-1 vote, the debate's verdict, and the gap in the vote's standard
    errors (the paper's Majority and Debate columns)."""
    majority, debate = (cells[arm.name] for arm in RUN_ARMS)
    lines = ["iteration  majority (round 1) %  debate %     debate - majority"]
    for i, (first, final) in enumerate(zip(majority, debate, strict=True)):
        gap = final.accuracy - first.accuracy
        in_se = f" ({gap / first.stderr:+.1f} SE)" if first.stderr else ""
        lines.append(f"{i:<9}  {_accuracy(first):<22}{_accuracy(final):<13}{100 * gap:+.1f}{in_se}")
    return lines


def plot_run(society: Society, artifacts: Path, path: Path) -> tuple[list[str], Path | None]:
    """For a finished `society run` (`society run --plot`): run_table's lines, and a plot of
    accuracy, consensus and diversity per iteration at `path` (None: no matplotlib)."""
    cells, method = run_cells(society, artifacts)
    panels: tuple[Panel, ...] = (
        _accuracy_panel(),
        ("consensus", lambda c: c.consensus, None),
        (f"diversity ({method.rpartition('/')[2]})", lambda c: c.diversity, None),
    )
    name = society.metadata.name
    title = f"{name}: {society.spec.model.name}, {society.spec.task.evalSize} eval problems"
    return run_table(cells), plot(cells, method, path, title, panels, RUN_ARMS)
