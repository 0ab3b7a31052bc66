"""(v3: eqtask3 formats, HEAD's engine vendored in /work/scratch13/v3/vendor.)
Iteration-0 debate of the project's own engine (Debate + TransformersGenerator, vendored from
HEAD) on the tiny-equations task: 3 agents, 2 rounds, summariser on, all roles played by MODEL.

usage: python evaldebate.py MODEL [--n 128] [--seed 0] [--temperature 1.0] [--threads 1]
Prints round-1 / round-2 per-agent accuracy, majority (round-1 vote), debate (round-2 vote),
consensus, summary fidelity, and Algorithm 1's data sizes per agent; writes a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, "/work/scratch13/v3/vendor/trainer")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import eqtask3 as T  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="eval")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--agents", type=int, default=3)
    ap.add_argument("--no-summary", action="store_true")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--adapters", default="", help="gen0,crit0,gen1,crit1,... adapter dirs")
    ap.add_argument("--dump", default="")
    ap.add_argument("--data-out", default="", help="write Algorithm 1's datasets here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from society_trainer.config import AgentModels, ModelRef, SamplingConfig, TransformersBackend
    from society_trainer.debate import Debate, DebateSetup, request_seed
    from society_trainer.finetune_data import build_agent_data
    from society_trainer.generation.transformers import TransformersGenerator
    from society_trainer.voting import consensus, majority

    b = json.loads((Path(args.model) / "build.json").read_text())["args"]
    T.CHECK_FORMAT = b.get("check_format", 4)
    T.SIGNED = not b.get("abs_off", False)
    task = T.EquationsTask()
    problems = task.load(args.split, args.n, args.seed)
    if args.adapters:
        paths = args.adapters.split(",")
        agents = [
            AgentModels(
                generation=ModelRef(name=f"gen-{n}", path=paths[2 * n] or None),
                critic=ModelRef(name=f"crit-{n}", path=paths[2 * n + 1] or None),
            )
            for n in range(args.agents)
        ]
    else:
        agents = [
            AgentModels(generation=ModelRef(name="base"), critic=ModelRef(name="base"))
        ] * args.agents
    setup = DebateSetup(
        task=task,
        prompts=task.prompts,
        agents=agents,
        rounds=2,
        summarize=not args.no_summary,
        sampling=SamplingConfig(
            temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens
        ),
        seed=args.seed,
    )
    gen = TransformersGenerator(
        TransformersBackend(base_model=Path(args.model), batch_size=args.batch, dtype="float32")
    )
    t0, c0 = time.time(), time.process_time()

    async def go():
        with tempfile.TemporaryDirectory() as d:
            records = await Debate(setup, gen).run(problems, Path(d) / "t.jsonl", "debate")
        await gen.aclose()
        return records

    records = asyncio.run(go())
    wall, cpu = time.time() - t0, time.process_time() - c0
    eq = task.answers_equal
    n = len(records)
    r1 = sum(task.is_correct(t.answer, r.reference) for r in records for t in r.rounds[0])
    r2 = sum(task.is_correct(t.answer, r.reference) for r in records for t in r.rounds[1])
    maj = sum(
        task.is_correct(majority([t.answer for t in r.rounds[0]], eq), r.reference)
        for r in records
    )
    deb = sum(task.is_correct(r.majority, r.reference) for r in records)
    any1 = sum(any(task.is_correct(t.answer, r.reference) for t in r.rounds[0]) for r in records)
    cons1 = sum(
        consensus([t.answer for t in r.rounds[0]], majority([t.answer for t in r.rounds[0]], eq), eq)
        for r in records
    ) / n
    cons2 = sum(consensus([t.answer for t in r.rounds[1]], r.majority, eq) for r in records) / n
    # summary fidelity: does the summary list exactly the others' round-1 answers?
    good_sum = tot_sum = 0
    for r in records:
        for t in r.rounds[1]:
            if t.summary is None:
                continue
            others = [u.response for u in r.rounds[0] if u.agent != t.agent]
            random.Random(request_seed(args.seed, r.id, t.agent, 2, "order")).shuffle(others)
            tot_sum += 1
            good_sum += t.summary.strip() == T.summary_response(others)
    data = build_agent_data(records, args.agents, 2 / 3, eq, args.seed)
    out_tokens = gen.generated_tokens

    def pct(k, m):
        p = k / m
        return f"{100 * p:.1f}% ± {100 * math.sqrt(p * (1 - p) / m):.1f}"

    se = math.sqrt((maj / n) * (1 - maj / n) / n)
    res = {
        "model": args.model,
        "n": n,
        "seed": args.seed,
        "temperature": args.temperature,
        "agent_r1": r1 / (n * args.agents),
        "agent_r2": r2 / (n * args.agents),
        "majority": maj / n,
        "debate": deb / n,
        "any_right_r1": any1 / n,
        "gap_in_se": (deb - maj) / n / se if se else None,
        "consensus_r1": cons1,
        "consensus_r2": cons2,
        "summary_exact": good_sum / tot_sum if tot_sum else None,
        "generation": [len(d.generation) for d in data],
        "corrected": [d.corrected for d in data],
        "kept_correct": [d.kept_correct for d in data],
        "critic": [len(d.critic) for d in data],
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "generated_tokens": out_tokens,
        "threads": args.threads,
    }
    print(
        f"agent r1 {pct(r1, n * args.agents)}  agent r2 {pct(r2, n * args.agents)}\n"
        f"majority {pct(maj, n)}  debate {pct(deb, n)}  (any right in r1 {pct(any1, n)})  "
        f"gap {res['gap_in_se'] or 0:.1f} SE\n"
        f"consensus r1 {cons1:.2f} r2 {cons2:.2f}  summary exact {res['summary_exact']}\n"
        f"data: gen {res['generation']} C- {res['corrected']} C+ {res['kept_correct']} "
        f"critic {res['critic']}\n"
        f"{wall:.0f}s wall {cpu:.0f}s cpu, {out_tokens} tokens"
    )
    with open("/work/scratch13/v3/results.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")
    if args.data_out:
        from society_trainer.finetune_data import write_agent_data

        print(write_agent_data(Path(args.data_out), data, with_critic=True))
    if args.dump:
        with open(args.dump, "w") as f:
            for r in records[:20]:
                f.write(f"## {r.question} ref {r.reference} verdict {r.majority}\n")
                for m, rnd in enumerate(r.rounds, 1):
                    for t in rnd:
                        if t.summary:
                            f.write(f"  [sum {t.agent}] {t.summary}\n")
                        f.write(f"  r{m} a{t.agent}: {t.response!r} -> {t.answer}\n")


if __name__ == "__main__":
    main()
