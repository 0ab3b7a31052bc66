"""What one iteration of a Society needs, built once: the reconciler diffs it against what it
observes, and `society run` takes each Job's step config from it.

Everything is derived from (Society, Settings, iteration) alone, so the same inputs always give
the same children with the same names: an operator restarted at any instant creates nothing
twice. Parts are built when first asked for, as most reconciles need only one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property, partial

from ..api import Society
from ..settings import Settings
from .access import build_access
from .child import JSON, Child
from .claim import build_claim
from .jobs import build_debate_job, build_training_jobs
from .names import claim_name, server_name
from .server import build_server, servers


class Desired:
    """Iteration `iteration`'s children: its servers, its debate Jobs, and the Jobs that train
    iteration `iteration + 1` from its debate."""

    def __init__(self, society: Society, settings: Settings, iteration: int) -> None:
        self.society, self.settings, self.iteration = society, settings, iteration

    @cached_property
    def claim(self) -> Child | None:
        """The artifact claim to create; None when the Society names an existing one."""
        body = build_claim(self.society, self.settings)
        return None if body is None else Child.of(body)

    @property
    def claim_name(self) -> str:
        return claim_name(self.society)

    @cached_property
    def access(self) -> list[Child]:
        """The servers' API key Secret (and NetworkPolicy): created with every new server,
        before it, and only ever created (access.py: the first key stays)."""
        return build_access(self.society, self.settings)

    @cached_property
    def servers(self) -> dict[str, tuple[Child, Child]]:
        """Deployment name -> (Deployment, Service) serving the iteration's models."""
        out = {}
        for served in servers(self.society, self.iteration):
            name = server_name(self.society, served)
            build = partial(build_server, self.society, self.settings, self.iteration, served)
            out[name] = (
                Child("Deployment", name, partial(_part, build, 0)),
                Child("Service", name, partial(_part, build, 1)),
            )
        return out

    @cached_property
    def debate(self) -> Child:
        """The debate: the eval split, and the train split unless this is the last iteration."""
        return build_debate_job(self.society, self.settings, self.iteration)

    @cached_property
    def train_split_debate(self) -> Child:
        """The train split alone, for a last iteration that finetune.iterations, raised after it
        was evaluated, made one more to train from."""
        return build_debate_job(self.society, self.settings, self.iteration, training_only=True)

    @cached_property
    def training(self) -> list[Child]:
        """The Jobs that train iteration + 1's models, one per agent and role."""
        return build_training_jobs(self.society, self.settings, self.iteration + 1)


def _part(build: Callable[[], tuple[JSON, JSON]], index: int) -> tuple[JSON, None]:
    return build()[index], None


def desired(society: Society, settings: Settings, iteration: int) -> Desired:
    return Desired(society, settings, iteration)
