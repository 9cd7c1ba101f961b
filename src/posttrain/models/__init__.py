"""Models and tokenizers: load from the Hub or disk, or build tiny MoE/dense ones for local runs."""
