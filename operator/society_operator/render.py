"""`society render`: every child the operator would create for a Society at one iteration, as a
YAML stream, the way `helm template` prints a chart: for a user to review before applying, and
for the tests that run a peer's security checks (checkov) over what the operator creates.

The objects are the operator's own, from build.desired(), with stand-ins for what only the
apiserver or the operator knows: the namespace is the manifest's (else `default`, as kubectl
does), the Society's uid in every ownerReference is the nil UUID, and the servers' API key, which
the operator draws when it creates the Secret, is not printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from .api import Society
from .build.desired import desired
from .settings import Settings

DEFAULT_NAMESPACE = "default"
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
UNDRAWN_KEY = "(drawn at random by the operator when it creates this Secret)"


@dataclass(frozen=True)
class Rendered:
    """One child: what it is (the `# Source:` comment above it) and its manifest."""

    what: str
    body: dict[str, Any]


class RenderError(ValueError):
    """An iteration the Society does not have; the message names the option."""


def placed(society: Society) -> Society:
    """The Society as the apiserver would hold it: in a namespace, with a uid."""
    meta = society.metadata.model_copy(
        update={
            "namespace": society.metadata.namespace or DEFAULT_NAMESPACE,
            "uid": society.metadata.uid or PLACEHOLDER_UID,
        }
    )
    return society.model_copy(update={"metadata": meta})


def children(society: Society, settings: Settings, iteration: int) -> Iterator[Rendered]:
    """Iteration `iteration`'s children in the order the operator creates them."""
    last = society.spec.finetune.iterations
    if not 0 <= iteration <= last:
        raise RenderError(
            f"--iteration {iteration}: the Society has iterations 0 to {last} "
            "(spec.finetune.iterations)"
        )
    society = placed(society)
    wanted = desired(society, settings, iteration)
    if wanted.claim is not None:
        yield Rendered("the artifact claim (spec.storage)", wanted.claim.body)
    for child in wanted.access:
        if child.kind == "Secret":
            body = {
                **child.body,
                "stringData": dict.fromkeys(child.body["stringData"], UNDRAWN_KEY),
            }
            yield Rendered("the servers' API key", body)
        else:
            name = child.body["metadata"]["name"]
            what = f"who may connect to the Society's pods ({child.kind} {name})"
            yield Rendered(what, child.body)
    for deployment, service in wanted.servers.values():
        yield Rendered(f"an inference server of iteration {iteration}", deployment.body)
        yield Rendered("its Service", service.body)
    yield Rendered(f"the debate of iteration {iteration}", wanted.debate.body)
    if iteration == last:
        yield Rendered(
            f"the debate of iteration {iteration}'s train split: created only if "
            f"spec.finetune.iterations is raised past {last}",
            wanted.train_split_debate.body,
        )
    else:
        for job in wanted.training:
            yield Rendered(f"a training Job of iteration {iteration + 1}", job.body)


def to_yaml(rendered: list[Rendered], source: str) -> str:
    """A YAML stream, each document preceded by `# Source:` lines, as helm template writes."""
    parts = []
    for child in rendered:
        parts.append(
            f"---\n# Source: {source}: {child.what}\n"
            + yaml.safe_dump(child.body, sort_keys=False, width=100)
        )
    return "".join(parts)
