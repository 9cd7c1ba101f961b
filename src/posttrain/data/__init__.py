"""Datasets: Hub names, local JSONL/Parquet files, and built-in generated tasks with verifiable answers."""
