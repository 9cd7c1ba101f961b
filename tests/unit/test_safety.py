import os
import signal
from types import SimpleNamespace

import pytest
import torch

from posttrain.safety import GracefulStop, NonFiniteError, NonFiniteGuard


def test_sigterm_requests_save_and_stop_then_restores_handler():
    stop = GracefulStop()
    before = signal.getsignal(signal.SIGTERM)
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    with stop.installed():
        os.kill(os.getpid(), signal.SIGTERM)
        stop.on_step_end(None, SimpleNamespace(global_step=7), control)
    assert control.should_save and control.should_training_stop
    assert stop.stopped_at == 7 and stop.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before


def test_no_signal_no_stop():
    stop = GracefulStop()
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    with stop.installed():
        stop.on_step_end(None, SimpleNamespace(global_step=1), control)
    assert not control.should_training_stop and stop.stopped_at is None


def test_nan_gradient_names_step_and_parameter():
    model = torch.nn.Linear(2, 1)
    model.weight.grad = torch.tensor([[float("nan"), 0.0]])
    with pytest.raises(NonFiniteError, match=r"step 4: non-finite gradient in weight"):
        NonFiniteGuard().on_pre_optimizer_step(None, SimpleNamespace(global_step=3), None, model=model)


def test_nan_loss_in_logs():
    guard = NonFiniteGuard()
    guard.on_log(None, SimpleNamespace(global_step=2), None, logs={"loss": 0.5})
    with pytest.raises(NonFiniteError, match="step 2: reward is nan"):
        guard.on_log(None, SimpleNamespace(global_step=2), None, logs={"reward": float("nan")})


def test_skip_mode_drops_the_update_and_counts_it():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    model.weight.grad = torch.tensor([[float("inf"), 1.0]])
    model.bias.grad = torch.tensor([1.0])
    guard = NonFiniteGuard(skip=True)
    guard.on_pre_optimizer_step(None, SimpleNamespace(global_step=0), None, model=model)
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert optimizer.state == {} or all(not s for s in optimizer.state.values())  # no Adam moments either
    logs = {"loss": float("nan")}
    guard.on_log(None, SimpleNamespace(global_step=1), None, logs=logs)  # skip mode does not stop
    assert logs["nonfinite_skipped"] == 1


def test_guarding_turns_a_caught_signal_into_interrupted(tmp_path):
    from posttrain.errors import Interrupted

    stop = GracefulStop()
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    with pytest.raises(Interrupted, match="SIGINT at step 3.*--resume"):
        with stop.guarding(tmp_path):
            os.kill(os.getpid(), signal.SIGINT)
            stop.on_step_end(None, SimpleNamespace(global_step=3), control)


def test_huge_finite_gradients_pass_and_a_non_finite_one_in_any_tensor_is_found():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    for param in model.parameters():
        param.grad = torch.full_like(param, 1e30)  # finite; its square would overflow float32
    NonFiniteGuard().on_pre_optimizer_step(None, SimpleNamespace(global_step=0), None, model=model)
    model[1].bias.grad = torch.tensor([float("-inf")])
    with pytest.raises(NonFiniteError, match=r"non-finite gradient in 1\.bias"):
        NonFiniteGuard().on_pre_optimizer_step(None, SimpleNamespace(global_step=0), None, model=model)
