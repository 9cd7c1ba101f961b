"""Memory and GPU readings: keys present only when their sensor is, GPU means per log interval."""

import threading
from types import SimpleNamespace

from posttrain.telemetry.resources import ResourceMonitor, Sensors, detect, peak_rss_mb

STATE = SimpleNamespace(is_world_process_zero=True, global_step=1)


def test_cpu_only_logs_peak_rss_and_nothing_else():
    monitor = ResourceMonitor(Sensors(peak_rss_mb=lambda: 123.0))
    monitor.on_train_begin(None, STATE, None)
    logs = {"loss": 1.0}
    monitor.on_log(None, STATE, None, logs=logs)
    assert logs == {"loss": 1.0, "memory/peak_rss_mb": 123.0}
    summary = {"train_runtime": 3.0}
    monitor.on_log(None, STATE, None, logs=summary)
    assert summary == {"train_runtime": 3.0}
    monitor.on_train_end(None, STATE, None)


def test_cuda_peak_is_per_interval_and_gpu_meters_average_their_samples():
    peak = {"mb": 0.0}
    readings = iter([(50.0, 200.0), (70.0, 300.0), (10.0, 100.0)])
    current = {}

    def next_reading():
        current["u"], current["p"] = next(readings)

    sensors = Sensors(
        peak_rss_mb=lambda: 10.0,
        cuda_peak_mb=lambda: peak["mb"],
        cuda_reset=lambda: peak.update(mb=0.0),
        gpu_utilisation_pct=lambda: current["u"],
        gpu_power_w=lambda: current["p"],
    )
    monitor = ResourceMonitor(sensors)  # no on_train_begin: no thread, samples taken by hand
    for _ in range(2):
        next_reading()
        monitor.sample()
    peak["mb"] = 512.0
    logs = {}
    monitor.on_log(None, STATE, None, logs=logs)
    assert logs == {
        "memory/peak_rss_mb": 10.0,
        "memory/cuda_max_allocated_mb": 512.0,
        "gpu/utilisation_pct": 60.0,
        "gpu/power_w": 250.0,
    }
    next_reading()  # a log interval shorter than the sampling period still gets one reading
    logs = {}
    monitor.on_log(None, STATE, None, logs=logs)
    assert logs["memory/cuda_max_allocated_mb"] == 0.0  # the peak was reset at the previous log
    assert (logs["gpu/utilisation_pct"], logs["gpu/power_w"]) == (10.0, 100.0)


def test_failing_nvml_turns_gpu_meters_off_without_raising(caplog):
    def broken():
        raise RuntimeError("NVML_ERROR_GPU_IS_LOST")

    monitor = ResourceMonitor(Sensors(peak_rss_mb=lambda: 1.0, gpu_utilisation_pct=broken, gpu_power_w=broken))
    logs = {}
    monitor.on_log(None, STATE, None, logs=logs)
    assert "gpu/power_w" not in logs and "GPU meters off" in caplog.text
    assert not monitor.sensors.has_gpu_meters


def test_sampling_thread_starts_and_stops():
    sampled = threading.Event()

    def utilisation():
        sampled.set()
        return 42.0

    monitor = ResourceMonitor(
        Sensors(peak_rss_mb=lambda: 1.0, gpu_utilisation_pct=utilisation, gpu_power_w=lambda: 5.0), sample_seconds=0.001
    )
    monitor.on_train_begin(None, STATE, None)
    assert sampled.wait(5)
    monitor.on_train_end(None, STATE, None)
    assert monitor._thread is None
    logs = {}
    monitor.on_log(None, STATE, None, logs=logs)
    assert logs["gpu/utilisation_pct"] == 42.0


def test_real_sensors_on_this_machine():
    assert peak_rss_mb() > 1.0  # a Python process with torch imported is well over 1 MiB
    sensors = detect()
    import torch

    assert (sensors.cuda_peak_mb is not None) == torch.cuda.is_available()
    if not torch.cuda.is_available():
        assert not sensors.has_gpu_meters
