"""Does the method do what the paper says, at toy scale? Base vs single-agent vs multiagent FT.

For each seed, the Society of examples/tiny.yaml (its built-in model and task: docs/method.md)
runs twice through `society run`'s executor, once per spec.mode, for
--iterations finetuning iterations. Both modes debate the same problems with the same base model at
iteration 0 (that row is the base society: the base model before any finetuning), and differ only in
who is finetuned on what (docs/method.md): single-agent FT trains one model on the pooled data of
all agents, multiagent FT trains each agent's generation and critic models on its own data. The
table pools the seeds: accuracy is correct / questions over all seeds, with its standard error
sqrt(p(1-p)/n); diversity is the mean over seeds.

    .venv/bin/python bench/method.py                        # the table in docs/benchmarks.md
    .venv/bin/python bench/method.py --seeds 0 --iterations 1 --eval-size 16 --train-size 16

Runs are kept under --artifacts (one directory per mode and seed); a rerun resumes them, so an
interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import yaml

from society_operator.api.validation import check_society
from society_operator.local import LocalRun, Progress
from society_operator.local.report import job_line

ROOT = Path(__file__).resolve().parents[1]
MODES = ("single-agent", "multiagent")


class Lines(Progress):
    """One line per finished step on stderr: a benchmark runs long and unattended."""

    def job_done(self, job, record) -> None:
        print(f"  {job_line(job, record)}", file=sys.stderr, flush=True)


def society(args: argparse.Namespace, mode: str, seed: int):
    manifest = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())
    manifest["metadata"]["name"] = f"method-{mode}-s{seed}"
    spec = manifest["spec"]
    spec["mode"] = mode
    spec["agents"] = args.agents
    spec["task"].update(seed=seed, trainSize=args.train_size, evalSize=args.eval_size)
    spec["finetune"]["iterations"] = args.iterations
    if args.model:
        spec["model"]["name"] = str(args.model.resolve())
    found, problems = check_society(manifest)
    if problems:
        raise SystemExit("\n".join(str(p) for p in problems))
    return found


def pooled(entries) -> tuple[float, float, float | None]:
    """Accuracy and its standard error over all seeds' questions; mean diversity."""
    questions = sum(e.evalQuestions or 0 for e in entries)
    correct = sum(round((e.accuracy or 0) * (e.evalQuestions or 0)) for e in entries)
    p = correct / questions if questions else 0.0
    diversities = [e.diversity for e in entries if e.diversity is not None]
    diversity = sum(diversities) / len(diversities) if diversities else None
    return p, math.sqrt(p * (1 - p) / questions) if questions else 0.0, diversity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--eval-size", type=int, default=150)
    parser.add_argument("--train-size", type=int, default=96)
    parser.add_argument("--artifacts", type=Path, default=ROOT / "runs" / "bench-method")
    parser.add_argument(
        "--model",
        type=Path,
        help="a local model directory instead of the example's built-in model "
        "(the CI smoke run uses a tiny random model)",
    )
    args = parser.parse_args()

    rounds = society(args, MODES[0], args.seeds[0]).spec.debate.rounds
    results = {}  # (mode, seed) -> status
    started = time.monotonic()
    for seed in args.seeds:
        for mode in MODES:
            print(f"{mode}, seed {seed}:", file=sys.stderr, flush=True)
            status = LocalRun(society(args, mode, seed), args.artifacts, Lines()).run()
            if status.phase != "Succeeded":
                failed = next(c for c in status.conditions if c.type == "Failed")
                raise SystemExit(f"{mode}, seed {seed}: {failed.message}")
            results[mode, seed] = status
    minutes = (time.monotonic() - started) / 60

    n = args.eval_size * len(args.seeds)
    print(
        f"{args.agents} agents, {rounds} round(s), seeds {' '.join(map(str, args.seeds))}, "
        f"{args.eval_size} eval problems per seed (n = {n} per cell), "
        f"{args.train_size} train problems per seed; {minutes:.0f} min"
    )
    print()
    print(
        "| iteration | single-agent FT: accuracy % | diversity | multiagent FT: accuracy % "
        "| diversity |"
    )
    print("|---:|---:|---:|---:|---:|")
    for i in range(args.iterations + 1):
        cells = []
        for mode in MODES:
            entries = [
                next(e for e in results[mode, seed].iterations if e.iteration == i)
                for seed in args.seeds
            ]
            p, se, diversity = pooled(entries)
            cells += [
                f"{100 * p:.1f} ± {100 * se:.1f}",
                "-" if diversity is None else f"{diversity:.3f}",
            ]
        label = f"{i} (base)" if i == 0 else str(i)
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("\ninterrupted: run the same command again to resume")
