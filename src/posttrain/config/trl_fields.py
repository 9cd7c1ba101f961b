"""Check a recipe's `trl:` pass-through mapping against TRL's own config fields.

Reading the field names from the dataclass keeps this correct across TRL releases; it costs
an import of trl's config module (no torch model code), only when a recipe uses `trl:`.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any


def trl_config_fields(name: str) -> set[str]:
    import trl

    return {f.name for f in dataclasses.fields(getattr(trl, name))}


def check_passthrough(values: dict[str, Any], config_name: str, owned: set[str]) -> None:
    """Raise ValueError naming every key TRL does not know, or that the recipe sets elsewhere."""
    if not values:
        return
    known = trl_config_fields(config_name)
    problems = []
    for key in values:
        if key in owned:
            problems.append(f"{key!r} is a recipe field: set it in the section itself, not under trl")
        elif key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{key!r} is not a trl.{config_name} field{hint}")
    if problems:
        raise ValueError("; ".join(problems))


def checkpointing_kwargs(config_name: str, enabled: bool) -> dict[str, bool]:
    """Gradient checkpointing under the name this transformers release uses.

    transformers 5.x renamed `gradient_checkpointing` to `activation_checkpointing` and warns on
    the old name, which TRL sets by default; naming the new one keeps logs clean.
    """
    key = "activation_checkpointing" if "activation_checkpointing" in trl_config_fields(config_name) else "gradient_checkpointing"
    return {key: enabled}


def warmup_kwargs(warmup_steps: int, warmup_ratio: float) -> dict[str, float]:
    """transformers 5 folds the ratio into `warmup_steps` (a value below 1 is a fraction of steps)."""
    return {"warmup_steps": warmup_steps if warmup_steps > 0 else warmup_ratio}
