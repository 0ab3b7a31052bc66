"""The operator's own configuration, from its environment (the Helm chart sets these).

Defaults for images live here, not in the Society schema: a cluster that mirrors images into a
private registry changes one chart value instead of every Society.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import __version__

# The project's images, as the release workflow (.github/workflows/release.yaml) publishes them.
IMAGE_REGISTRY = "ghcr.io/society-operator"
# vLLM's own image, which images/vllm/Dockerfile extends with the pods' non-root user only.
VLLM_UPSTREAM_IMAGE = "vllm/vllm-openai:v0.26.0"
DEFAULT_VLLM_IMAGE = f"{IMAGE_REGISTRY}/vllm:{__version__}"
DEFAULT_TRAINER_IMAGE = f"{IMAGE_REGISTRY}/trainer:{__version__}"


@dataclass(frozen=True)
class Settings:
    vllm_image: str = DEFAULT_VLLM_IMAGE
    trainer_image: str = DEFAULT_TRAINER_IMAGE
    artifacts_mount: str = "/artifacts"  # where every pod mounts the artifact claim
    default_claim_size: str = "100Gi"
    embedding_model: str | None = None  # a sentence-transformers model in the trainer image
    # A NetworkPolicy per Society admitting only its debate pods to its servers (build/access.py).
    network_policy: bool = True

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            vllm_image=env.get("SOCIETY_VLLM_IMAGE", defaults.vllm_image),
            trainer_image=env.get("SOCIETY_TRAINER_IMAGE", defaults.trainer_image),
            artifacts_mount=env.get("SOCIETY_ARTIFACTS_MOUNT", defaults.artifacts_mount),
            default_claim_size=env.get("SOCIETY_DEFAULT_CLAIM_SIZE", defaults.default_claim_size),
            embedding_model=env.get("SOCIETY_EMBEDDING_MODEL") or None,
            network_policy=env.get("SOCIETY_NETWORK_POLICY", "true").strip().lower()
            not in ("0", "false", "no", "off"),
        )
