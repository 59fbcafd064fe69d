"""The nightly job and the CLI glue: resumable stages that put features, training, candidates, ranking and publishing together."""
