"""Reasoning distillation: teacher traces filtered by rewards, then sequence- and logit-level KD."""
