"""Every benchmark in bench/ runs, small, in CI: a change that breaks one is caught here, not by
the next person who needs its numbers. These check that each script finishes and prints its
table; the numbers themselves are for docs/benchmarks.md, measured by hand."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..conftest import ROOT

# Each runs its script as a subprocess.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def bench(script: str, *args: str, timeout: float = 300) -> str:
    command = [sys.executable, str(ROOT / "bench" / script), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_every_benchmark_has_a_smoke_run_here():
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")}
    covered = {
        "debate_throughput.py",
        "finetune_gpu.py",
        "kopf_events.py",
        "operator_memory.py",
        "operator_scale.py",
    }
    assert scripts == covered, f"give {scripts - covered} a smoke run in this file"


def test_debate_throughput():
    out = bench(
        "debate_throughput.py",
        *("--questions", "6", "--sequential-questions", "2", "--latency", "0.01"),
    )
    assert "|" in out and "lower bound" in out.lower()


def test_finetune_gpu_on_the_cpu():
    out = bench("finetune_gpu.py", "--tiny", "--steps", "2")
    assert "tokens/s" in out


def test_kopf_events():
    out = bench("kopf_events.py", "--events", "200", "--rounds", "1")
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| pods")]
    # What the test suite checks of the handlers, seen from here: only changes wake.
    assert [row[5].strip() for row in rows] == ["0.00", "1.00"], out


def test_operator_scale():
    from ..cluster.assets import find_assets

    if find_assets() is None:  # it runs on the real control plane, as tests/cluster does
        pytest.skip("no Kubernetes control-plane binaries (tests/README.md)")
    out = bench("operator_scale.py", "--societies", "3", "--timeout", "120")
    assert "per Society iteration" in out and "peak RSS" in out
    assert "taken apart" in out  # the audit log matched the Jobs the script saw


def test_operator_memory():
    from ..cluster.assets import find_assets

    if find_assets() is None:  # it runs on the real control plane, as tests/cluster does
        pytest.skip("no Kubernetes control-plane binaries (tests/README.md)")
    out = bench("operator_memory.py", "--pods", "20", "--settle", "1")
    assert "| 20 | with |" in out and "| 20 | without |" in out
