"""Config: the infra-repo layout, YAML with origins, the layers and the builder keys.

The first step of the pipeline: everything else starts from a `ResolvedVars`."""
