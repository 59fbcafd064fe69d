"""The neutral core every stage shares: typed config, the types that travel, artifacts, snapshots, the page store."""
