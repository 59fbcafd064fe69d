"""Training: the models (one class per algorithm), their registry, the evaluation harness and the nightly training steps."""
