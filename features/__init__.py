"""Events to features: the event schema, ingest, feature frames and the Feast store."""
