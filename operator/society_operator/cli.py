"""The `society` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__

if TYPE_CHECKING:
    from .api.manifests import Document


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="society")
def main() -> None:
    """society-operator: multiagent finetuning of language models on Kubernetes."""


@main.command()
def crd() -> None:
    """Print the Society CustomResourceDefinition (generated from the API models)."""
    from .api.crd import render_crd_yaml

    click.echo(render_crd_yaml(), nl=False)


@main.command("api-reference")
def api_reference() -> None:
    """Print the Markdown API reference (docs/api.md)."""
    from .api.reference import render_api_reference

    click.echo(render_api_reference())


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Validate Society manifests (multi-document YAML too).

    Exits 0 when every document is a valid Society; otherwise prints one line per problem,
    FILE: NAME: FIELD: WHAT, and exits 1.
    """
    from .api.manifests import ManifestError, load_documents

    failed = False
    for file in files:
        try:
            for document in load_documents(file):
                for line in document.lines():
                    click.echo(line)
                    failed = True
                if not document.problems:
                    click.echo(f"{file}: {document.label}: valid")
        except ManifestError as error:
            click.echo(str(error))
            failed = True
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--iteration",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="The iteration whose children to print (0 to spec.finetune.iterations).",
)
def render(file: str, iteration: int) -> None:
    """Print every child the operator would create for the Societies in FILE at one iteration.

    A YAML stream, as `helm template` prints a chart: the artifact claim, the servers'
    API key Secret (its key left undrawn) and NetworkPolicies, the inference servers
    (Deployment and Service), the debate Job and the Jobs that train the next iteration.
    Images and storage defaults come from the operator's environment variables
    (SOCIETY_VLLM_IMAGE, SOCIETY_TRAINER_IMAGE, ...); the namespace from the manifest (else
    default); the ownerReferences carry a nil uid (the apiserver assigns the real one). Prints
    nothing and exits 1, one line per problem, when a manifest is not a valid Society.
    """
    from .api.manifests import ManifestError, load_documents
    from .render import RenderError, children, to_yaml
    from .settings import Settings

    try:
        documents = list(load_documents(file))
    except ManifestError as error:
        click.echo(str(error), err=True)
        sys.exit(1)
    problems = [line for document in documents for line in document.lines()]
    settings = Settings.from_env()
    out = []
    for document in documents:
        if document.society is None:
            continue
        try:
            rendered = list(children(document.society, settings, iteration))
        except RenderError as error:
            problems.append(f"{file}: {document.label}: {error}")
            continue
        out.append(to_yaml(rendered, f"{file}: {document.label}"))
    if problems:
        click.echo("\n".join(problems), err=True)
        sys.exit(1)
    click.echo("".join(out), nl=False)


@main.command("operator")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch only this namespace (repeatable). Default: the whole cluster.",
)
@click.option("--health-port", type=int, default=8080, show_default=True, help="GET /healthz.")
@click.option(
    "--metrics-port", type=int, default=9090, show_default=True, help="GET /metrics; 0: off."
)
@click.option(
    "--leader-elect/--no-leader-elect",
    default=True,
    show_default=True,
    help="Act only while holding the Lease, so that several replicas are safe.",
)
@click.option("--lease-name", default="society-operator", show_default=True)
@click.option("--lease-namespace", help="Default: $POD_NAMESPACE, else default.")
@click.option(
    "--resync-seconds",
    type=click.FloatRange(min=1),
    default=60,
    show_default=True,
    help="Reconcile every Society at least this often, events or not.",
)
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
def operator_command(
    namespaces: tuple[str, ...],
    health_port: int,
    metrics_port: int,
    leader_elect: bool,
    lease_name: str,
    lease_namespace: str | None,
    resync_seconds: float,
    verbose: bool,
) -> None:
    """Run the operator: drive every Society in the cluster (or NAMESPACEs) to its end.

    Replicas coordinate through a Lease (leader election). Images and storage defaults come
    from the environment (SOCIETY_VLLM_IMAGE, SOCIETY_TRAINER_IMAGE, ...); POD_NAME and
    POD_NAMESPACE, from the downward API, name this replica and its Lease's namespace.
    """
    from .kube.config import OperatorConfig
    from .kube.handlers import run

    overrides: dict[str, object] = {
        "leader_election": leader_elect,
        "lease_name": lease_name,
        "resync_seconds": resync_seconds,
        "metrics_port": metrics_port or None,
    }
    if lease_namespace:
        overrides["lease_namespace"] = lease_namespace
    config = OperatorConfig.from_env(**overrides)
    run(config, namespaces=namespaces, health_port=health_port or None, verbose=verbose)


@main.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--artifacts",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Where runs keep their artifacts and state: DIR/<society name>/.",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    help="Training steps run at once. Default: all of an iteration's for a CPU run "
    "(training.gpus 0), sharing the cores; one at a time when they use GPUs.",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1, max=100),
    help="Finetuning iterations L (default: the Society's spec.finetune.iterations). A run "
    "that ended goes on from where it stopped when run again with more.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Once the run has ended, also print each iteration's round-1 majority vote against "
    "the debate's verdict, and plot accuracy, consensus and diversity per iteration to this "
    "PNG (needs matplotlib: the dev extra).",
)
def run_command(
    file: str, artifacts: Path, parallel: int | None, iterations: int | None, plot: Path | None
) -> None:
    """Run a Society's whole lifecycle on this machine, without a cluster.

    The operator's own state machine decides each step; each step is the `society-trainer`
    command its Job would run, here a subprocess that generates in-process with transformers.
    An iteration's training steps run side by side, as its Jobs do on a cluster. Ends with a
    table of iterations. Ctrl-C stops it; the same command resumes it.
    """
    from .local import LocalRun, LocalRunError
    from .local.report import TerminalProgress, iteration_table

    documents = _valid_documents(file)
    if len(documents) != 1:
        click.echo(f"{file}: holds {len(documents)} Societies; `society run` runs one")
        sys.exit(1)
    society = documents[0].society
    if iterations is not None:
        society = society.model_copy(deep=True)
        society.spec.finetune.iterations = iterations
    try:
        local = LocalRun(society, artifacts, TerminalProgress(), parallel)
        status = local.run()
    except LocalRunError as error:
        click.echo(f"society run: {error}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: run `society run {file}` again to resume", err=True)
        sys.exit(130)
    if status.iterations:
        click.echo(iteration_table(status, local.cluster.jobs))
    click.echo(f"artifacts: {local.root}", err=True)
    if status.phase == "Failed":
        failed = next(c for c in status.conditions if c.type == "Failed")
        click.echo(f"society run: {failed.message}", err=True)
        for log in local.failed_logs():
            click.echo(f"its log: {log}", err=True)
        sys.exit(1)
    if plot is not None and status.iterations:
        from .compare import plot_run

        lines, written = plot_run(society, artifacts.resolve(), plot)
        click.echo("\n".join(lines))
        click.echo(f"plot: {written}" if written else "plot: matplotlib is not installed", err=True)
    click.echo(f"{documents[0].label}: {status.phase}", err=True)


@main.command("compare")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--seeds", default="0", show_default=True, help="Task seeds, e.g. 0,1,2.")
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    help="Finetuning iterations L (default: the Society's spec.finetune.iterations).",
)
@click.option(
    "--artifacts",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/compare"),
    show_default=True,
    help="Where the arms' runs and analyses are kept (DIR/<society>-<mode>-m<rounds>-s<seed>/).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The PNG to write (default: ARTIFACTS/<society>.png); needs matplotlib.",
)
@click.option(
    "--eval-size", type=click.IntRange(min=1), help="Eval problems per seed (default: FILE's)."
)
@click.option(
    "--train-size", type=click.IntRange(min=1), help="Train problems per seed (default: FILE's)."
)
@click.option(
    "--likelihood-questions",
    type=click.IntRange(min=0),
    default=64,
    show_default=True,
    help="Eval questions whose answers are scored for likelihood diversity.",
)
def compare_command(
    file: str,
    seeds: str,
    iterations: int | None,
    artifacts: Path,
    plot_path: Path | None,
    eval_size: int | None,
    train_size: int | None,
    likelihood_questions: int,
) -> None:
    """The paper's Table 1 for the Society in FILE, on this machine.

    Base, Majority, Debate, STaR, Single-agent FT, Majority-FT and Multiagent FT (docs/method.md),
    each finetuned arm run by `society run`'s executor for L iterations and every seed; prints
    accuracy ± SE (seeds pooled), consensus, diversity and likelihood diversity as Markdown and
    writes a plot. Ctrl-C stops it; the same command resumes it.
    """
    from .compare import StepLines, compare, plot, sized, table
    from .local import LocalRunError

    documents = _valid_documents(file)
    if len(documents) != 1:
        click.echo(f"{file}: holds {len(documents)} Societies, not one")
        sys.exit(1)
    society = sized(documents[0].society, eval_size, train_size)
    try:
        chosen = [int(seed) for seed in seeds.replace(",", " ").split()]
    except ValueError:
        click.echo(f"--seeds {seeds!r}: not a list of integers")
        sys.exit(2)
    iterations = iterations or society.spec.finetune.iterations
    try:
        cells, method = compare(
            society, chosen, iterations, artifacts, StepLines(), likelihood_questions
        )
    except LocalRunError as error:
        click.echo(f"society compare: {error}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: run the same command again to resume", err=True)
        sys.exit(130)
    spec = society.spec
    click.echo(
        f"{society.metadata.name}: {spec.model.name}, {spec.task.name}, N = {spec.agents} agents, "
        f"M = {spec.debate.rounds} round(s), L = {iterations}, seeds {' '.join(map(str, chosen))}, "
        f"{spec.task.evalSize} eval problems per seed (pooled); diversity: {method}"
    )
    click.echo("")
    click.echo("\n".join(table(cells)))
    where = plot_path or artifacts / f"{society.metadata.name}.png"
    title = f"{society.metadata.name}: {spec.model.name}, seeds {','.join(map(str, chosen))}"
    written = plot(cells, method, where, title)
    click.echo(f"plot: {written}" if written else "plot: matplotlib is not installed", err=True)


if __name__ == "__main__":
    main()


def _valid_documents(file: str) -> list[Document]:
    """The Societies in FILE; exits 1 with one line per problem when any is not valid."""
    from .api.manifests import ManifestError, load_documents

    try:
        documents = list(load_documents(file))
    except ManifestError as error:
        click.echo(str(error))
        sys.exit(1)
    problems = [line for document in documents for line in document.lines()]
    if problems:
        click.echo("\n".join(problems))
        sys.exit(1)
    return documents
