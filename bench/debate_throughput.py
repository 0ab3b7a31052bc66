"""How close the debate engine gets to the fastest a debate can possibly run.

A stub OpenAI-compatible server (tests/trainer/stub_openai.py, in its own process) answers every
request after a fixed latency and serves at most `capacity` requests at once, like a vLLM server
whose batch is full. Against it we time:
- this engine (OpenAIGenerator + Debate), at the configured concurrency;
- a client that sends one request at a time, as the authors' public code does (measured on a
  subset, then scaled: it is exactly linear in the number of requests).
The lower bound is max(critical path, work / capacity): a question needs (rounds - 1) * 2 + 1
sequential calls with summaries (rounds without), and the server can do no more than `capacity`
requests per latency period.

    .venv/bin/python bench/debate_throughput.py            # the table in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the stub server, which lives with the tests

from society_trainer.config import AgentModels, ModelRef, OpenAIBackend, SamplingConfig  # noqa: E402
from society_trainer.debate import Debate, DebateSetup  # noqa: E402
from society_trainer.generation.openai import OpenAIGenerator  # noqa: E402
from society_trainer.tasks import get_task  # noqa: E402


def _serve(models, latency, capacity, urls, stop) -> None:
    from tests.trainer.stub_openai import StubOpenAIServer

    async def main() -> None:
        async with StubOpenAIServer(models, latency=latency, capacity=capacity) as server:
            urls.put(server.base_url)
            while not stop.is_set():
                await asyncio.sleep(0.05)

    asyncio.run(main())


async def _debate(url, agents, rounds, summarize, questions, concurrency) -> tuple[float, int]:
    task = get_task("arithmetic")
    models = [
        AgentModels(generation=ModelRef(name=f"gen-{n}"), critic=ModelRef(name=f"critic-{n}"))
        for n in range(agents)
    ]
    setup = DebateSetup(
        task=task,
        prompts=task.prompts,
        agents=models,
        rounds=rounds,
        summarize=summarize,
        sampling=SamplingConfig(max_tokens=256),
        seed=0,
    )
    generator = OpenAIGenerator(
        OpenAIBackend(base_urls={}, default_base_url=url), concurrency=concurrency
    )
    problems = task.load("eval", questions, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        await Debate(setup, generator).run(problems, Path(tmp) / "t.jsonl", "bench")
        elapsed = time.perf_counter() - started
    await generator.aclose()
    return elapsed, generator.requests_sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-summarize", dest="summarize", action="store_false")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per request")
    parser.add_argument(
        "--capacity", type=int, default=64, help="requests the server serves at once"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="the engine's bound")
    parser.add_argument("--sequential-questions", type=int, default=10)
    args = parser.parse_args()

    models = [f"{role}-{n}" for role in ("gen", "critic") for n in range(args.agents)]
    urls, stop = multiprocessing.Queue(), multiprocessing.Event()
    server = multiprocessing.Process(
        target=_serve, args=(models, args.latency, args.capacity, urls, stop), daemon=True
    )
    server.start()
    url = urls.get(timeout=30)
    try:
        common = (url, args.agents, args.rounds, args.summarize)
        engine, requests = asyncio.run(_debate(*common, args.questions, args.concurrency))
        seq_q = min(args.sequential_questions, args.questions)
        seq, seq_requests = asyncio.run(_debate(*common, seq_q, 1))
    finally:
        stop.set()
        server.join(10)

    per_question = requests / args.questions
    chain = 1 + (args.rounds - 1) * (2 if args.summarize else 1)
    bound = max(chain * args.latency, requests * args.latency / args.capacity)
    sequential = seq * args.questions / seq_q
    print(
        f"debate of {args.questions} questions x {args.agents} agents x {args.rounds} rounds"
        f"{' with summaries' if args.summarize else ''}: {requests} requests "
        f"({per_question:.0f} per question); server latency {args.latency * 1000:.0f} ms, "
        f"capacity {args.capacity}; engine concurrency {args.concurrency}\n"
    )
    print("| client | wall time (s) | requests/s | x lower bound |")
    print("|---|---:|---:|---:|")
    print(
        f"| lower bound: max(critical path, work / capacity) | {bound:.2f} | "
        f"{requests / bound:.0f} | 1.00 |"
    )
    print(f"| this engine | {engine:.2f} | {requests / engine:.0f} | {engine / bound:.2f} |")
    print(
        f"| one request at a time (scaled from {seq_q} questions) | {sequential:.1f} | "
        f"{seq_requests / seq:.1f} | {sequential / bound:.1f} |"
    )


if __name__ == "__main__":
    main()
