"""society-operator: a Kubernetes operator for multiagent finetuning of language models.

Importing it does nothing else: `society operator` (kube.handlers.run) registers the kopf
handlers, in a registry of its own.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("society-operator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
