"""The streaming core: types, run context and results, stages, the runner and pipelines."""
