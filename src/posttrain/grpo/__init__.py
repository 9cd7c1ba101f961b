"""GRPO: a recipe becomes a `trl.GRPOTrainer` run with held-out evaluation before and after."""
