"""The `society` command."""

from __future__ import annotations

import sys

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="society")
def main() -> None:
    """society-operator: multiagent finetuning of language models on Kubernetes."""


@main.command()
def crd() -> None:
    """Print the Society CustomResourceDefinition (generated from the API models)."""
    from .crd import render_crd_yaml

    click.echo(render_crd_yaml(), nl=False)


@main.command("api-reference")
def api_reference() -> None:
    """Print the Markdown API reference (docs/api.md)."""
    from .apidoc import render_api_reference

    click.echo(render_api_reference())


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Validate Society manifests (multi-document YAML too).

    Exits 0 when every document is a valid Society; otherwise prints one line per problem,
    FILE: NAME: FIELD: WHAT, and exits 1.
    """
    from .manifests import ManifestError, load_documents

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


if __name__ == "__main__":
    main()
