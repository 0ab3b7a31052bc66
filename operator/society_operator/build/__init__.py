"""Pure builders of what a Society needs: names and labels, step configs, pod specs, the vLLM
servers, Jobs, the artifact claim, and `desired()`, which puts one iteration's children
together for the reconciler. Dicts and pydantic models in, manifests out, no API calls."""
