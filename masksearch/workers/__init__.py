"""Running many items at once: Ray sharding (`cluster`) and the CLI options that ask for it
(`options`). Below `masking/`, `pipeline/` and `eval/`, which all run on it."""
