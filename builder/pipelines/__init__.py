"""The pipelines around bake and release: promote, rebuild, prune and status."""
