"""Model cards: the Hub's parser reads the metadata; the body states the run's own figures."""

from huggingface_hub import ModelCard

from posttrain.config.schema import ModelConfig
from posttrain.models.loading import hub_model_id
from posttrain.telemetry.model_card import grpo_card, routing_from_metrics, write_card

RECIPE = {
    "model": {"name_or_path": "Qwen/Qwen3-30B-A3B", "warmstart": {"steps": 0}},
    "data": {"source": "openai/gsm8k", "num_train": 1000},
    "rewards": {"functions": [{"name": "accuracy", "weight": 1.0}, {"name": "format", "weight": 0.2}]},
}
SUMMARY = {
    "steps": 300,
    "params_total": 30_000_000_000,
    "params_active": 3_000_000_000,
    "wall_seconds": 3600.0,
    "stage_seconds": {"grpo": 3000.0, "eval_final": 300.0},
    "cost": {"device": "NVIDIA H100", "usd": 12.5},
    "eval": {
        "num_problems": 500,
        "num_samples": 8,
        "temperature": 0.6,
        "base": {"accuracy": 0.5, "greedy_accuracy": 0.55, "format_rate": 0.9},
        "final": {"accuracy": 0.625, "greedy_accuracy": 0.6, "format_rate": 0.99},
    },
}


def test_a_hub_run_card_names_its_base_model_data_and_figures(tmp_path):
    routing = routing_from_metrics(
        [
            {"step": 5, "moe/max_vio_mean": 0.9},
            {"step": 10, "moe/max_vio_mean": 0.25, "moe/entropy_mean": 0.97},
            {"step": 10, "loss": 1.0},
        ]
    )
    assert routing == {"step": 10, "max_vio_mean": 0.25, "entropy_mean": 0.97, "dead_experts": 0}
    text = grpo_card(
        RECIPE,
        SUMMARY,
        command="posttrain grpo r.yaml --set grpo.max_steps=300",
        base_model="Qwen/Qwen3-30B-A3B",
        datasets=["openai/gsm8k"],
        routing=routing,
    )
    write_card(tmp_path, text)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "Qwen/Qwen3-30B-A3B" and card.data.datasets == ["openai/gsm8k"]
    assert card.data.pipeline_tag == "text-generation" and "grpo" in card.data.tags
    assert "| base | 50.0% | 55.0% | 90.0% |" in card.text and "| after GRPO | 62.5% | 60.0% | 99.0% |" in card.text
    assert "500 held-out problems" in card.text and "8 samples per problem at temperature 0.6" in card.text
    assert "At step 10: MaxVio 0.250" in card.text
    assert "Estimated cost $12.50" in card.text and "NVIDIA H100" in card.text
    assert "posttrain grpo r.yaml --set grpo.max_steps=300" in card.text
    assert "30,000,000,000 parameters" in card.text


def test_a_run_without_evaluation_or_routing_says_so_and_omits_those_figures():
    summary = {**SUMMARY, "eval": {"base": None, "final": None}}
    text = grpo_card(RECIPE, summary, command="posttrain grpo r.yaml", base_model=None, datasets=[])
    assert "No held-out evaluation" in text and "MaxVio" not in text
    assert "base_model" not in text.split("---")[1]


def test_only_hub_ids_become_base_model(tmp_path):
    assert hub_model_id(ModelConfig(name_or_path="Qwen/Qwen3-30B-A3B")) == "Qwen/Qwen3-30B-A3B"
    assert hub_model_id(ModelConfig(name_or_path="gpt2")) == "gpt2"
    assert hub_model_id(ModelConfig(name_or_path="build:tiny-moe")) is None
    assert hub_model_id(ModelConfig(name_or_path=str(tmp_path))) is None
    assert hub_model_id(ModelConfig(name_or_path="./outputs/tiny-math")) is None
    assert hub_model_id(ModelConfig(name_or_path="outputs/runs/tiny-math")) is None
