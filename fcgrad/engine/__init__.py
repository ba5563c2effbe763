"""The engine: a run's description, both sides built from it, compared step by step under the rules."""
