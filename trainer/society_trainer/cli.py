"""The `society-trainer` command: one subcommand per step a pod runs.

A step that fails writes a one-line error to the termination-message path (when set) before
exiting non-zero: that line is what the operator quotes in the Society's Failed condition.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click
from pydantic import ValidationError

from . import __version__
from .config import (
    STEP_CONFIG_ENV,
    AnalysisConfig,
    DebateConfig,
    FinetuneConfig,
    StepModel,
    load_config,
)
from .results import CONFIG_ERROR_EXIT_CODE, DebateResult, FinetuneResult, StepError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="society-trainer")
def main() -> None:
    """Steps of a multiagent finetuning run: debate, finetune, evaluate."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _run_step(
    config_path: Path | None,
    model: type[StepModel],
    step: Callable[[StepModel], DebateResult | FinetuneResult],
) -> None:
    termination_log: Path | None = None
    try:
        config = load_config(config_path, model)
        termination_log = config.termination_log
        result = step(config)
    except Exception as error:  # whatever it is, the operator must be told, in one line
        message = " ".join(f"{type(error).__name__}: {error}".split())
        click.echo(f"society-trainer: {message}", err=True)
        if termination_log is not None:
            termination_log.write_text(StepError(error=message).termination_message())
        sys.exit(CONFIG_ERROR_EXIT_CODE if _is_config_error(error) else 1)
    click.echo(result.model_dump_json(indent=2, exclude_none=True))


def _is_config_error(error: Exception) -> bool:
    """Errors a retry cannot fix: a wrong step config, a model or dataset that is not there."""
    from .finetune import DatasetFormatError
    from .models import ModelNotFoundError
    from .tasks import DatasetError

    return isinstance(
        error, ValidationError | ModelNotFoundError | DatasetError | DatasetFormatError
    )


def config_option(model: type[StepModel]):
    return click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, path_type=Path),
        help=f"{model.__name__} as YAML or JSON (default: JSON in ${STEP_CONFIG_ENV}).",
    )


@main.command()
@config_option(DebateConfig)
def debate(config_path: Path | None) -> None:
    """Debate the eval split (accuracy) and the train split (the next iteration's data)."""
    from .debate_step import debate as run

    _run_step(config_path, DebateConfig, run)


@main.command()
@config_option(FinetuneConfig)
def finetune(config_path: Path | None) -> None:
    """Finetune one agent in one role on its dataset (LoRA or full), resuming if interrupted."""
    from .finetune import run_finetune
    from .launch import inside_launcher, relaunch

    def run(config: FinetuneConfig) -> FinetuneResult:
        if config.gpus > 1 and not inside_launcher():
            relaunch(config, config_path)  # does not return
        return run_finetune(config)

    _run_step(config_path, FinetuneConfig, run)


@main.command()
@config_option(AnalysisConfig)
def analyse(config_path: Path | None) -> None:
    """Read one iteration's eval debate as Table 1's arms do, with likelihood diversity
    (`society compare` runs it)."""
    from .analysis import analyse as run

    config = load_config(config_path, AnalysisConfig)
    click.echo(json.dumps(run(config), indent=2))


@main.command()
@click.argument("name")
@click.option("--revision", help="Git revision of a Hugging Face id (default: its main branch).")
def model(name: str, revision: str | None) -> None:
    """Make a base model available and print where it is: a builtin model is built and cached,
    a Hugging Face id is checked (its tokenizer is fetched). Steps do the same on their own;
    this only does it up front, with a clear error for a name that cannot be found."""
    from .models import BUILTIN_PREFIX, ModelNotFoundError, load_tokenizer, resolve_model

    try:
        location = resolve_model(name)
        if not name.startswith(BUILTIN_PREFIX):
            load_tokenizer(location, revision)
    except ModelNotFoundError as error:
        click.echo(f"society-trainer: {error}", err=True)
        sys.exit(1)
    click.echo(location)


if __name__ == "__main__":
    main()
