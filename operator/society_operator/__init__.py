"""society-operator: a Kubernetes operator for multiagent finetuning of language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("society-operator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# `kopf run -m society_operator` imports just this package, with kopf already loaded: register
# the handlers then. Plain CLI use (`society validate`) does not pay for importing kopf.
if "kopf" in __import__("sys").modules:
    from . import handlers  # noqa: E402, F401
