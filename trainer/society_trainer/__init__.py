"""society-trainer: what runs inside the debate and finetuning pods (and `society run` locally).

Nothing here imports the operator. `society_trainer.config` must stay importable without torch:
the operator builds step configs from it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("society-operator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
