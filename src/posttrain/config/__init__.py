"""Recipes: the typed schema and the YAML + `--set` loader that validates them at the edge."""

from posttrain.config.loader import load_recipe, parse_overrides
from posttrain.config.schema import GRPORecipe

__all__ = ["GRPORecipe", "load_recipe", "parse_overrides"]
