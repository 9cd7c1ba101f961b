"""Resume bookkeeping: reused stages keep their measured seconds; changed recipe keys are named."""

from posttrain.distill.ledger import Ledger


def test_reused_stage_keeps_the_seconds_it_took(tmp_path):
    ledger = Ledger(tmp_path / "stages.json")
    with ledger.stage("traces", reused=False):
        pass
    ledger.seconds["traces"] = 42.0
    ledger.save()
    again = Ledger(tmp_path / "stages.json")
    with again.stage("traces", reused=True):
        pass
    assert again.seconds["traces"] == 42.0 and again.reused["traces"] is True
    assert again.params_once("teacher", lambda: {"total": 3, "active": 2}) == {"total": 3, "active": 2}
    assert Ledger(tmp_path / "stages.json").params_once("teacher", lambda: 1 / 0) == {"total": 3, "active": 2}


def test_recipe_changes_name_the_changed_keys(tmp_path):
    import yaml

    from posttrain.distill.ledger import recipe_changes

    path = tmp_path / "recipe.yaml"
    path.write_text(
        yaml.safe_dump({"distill": {"max_steps": 400, "traces": {"num_samples": 2}}, "data": {"source": "arithmetic"}})
    )
    new = {"distill": {"max_steps": 300, "traces": {"num_samples": 2}}, "data": {"source": "arithmetic"}}
    assert recipe_changes(path, new) == ["distill.max_steps"]
    assert recipe_changes(tmp_path / "none.yaml", new) == []
