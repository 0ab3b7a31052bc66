"""The `society-trainer` command: one subcommand per step a pod runs."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="society-trainer")
def main() -> None:
    """Steps of a multiagent finetuning run: debate, finetune, evaluate."""


if __name__ == "__main__":
    main()
