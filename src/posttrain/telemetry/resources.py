"""Memory and GPU readings per logged step: peak RSS, CUDA peak allocation, GPU utilisation and power.

`ResourceMonitor` is a Trainer callback (any trainer) that adds to each training log:

- `memory/peak_rss_mb`: the process's peak resident memory so far (getrusage; the OS keeps no
  resettable peak, so it only grows);
- `memory/cuda_max_allocated_mb`: peak CUDA memory allocated by tensors since the previous log
  (the peak is reset after every log), when CUDA is in use;
- `gpu/utilisation_pct`, `gpu/power_w`: the device's mean utilisation and power draw since the
  previous log, sampled by a background thread through NVML. Only when CUDA is in use and
  `nvidia-ml-py` (`pynvml`) is importable; silently absent otherwise. NVML reports the whole GPU,
  so another process on the same device counts too.

In a multi-process run each process reads its own; the rows written are the main process's.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import TrainerCallback

log = logging.getLogger(__name__)

MiB = 1024 * 1024


def peak_rss_mb() -> float | None:
    """This process's peak resident set size in MiB (Linux reports KiB, macOS bytes); None if unknown."""
    try:
        import resource
    except ImportError:  # Windows
        return _windows_peak_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MiB if sys.platform == "darwin" else peak / 1024


def _windows_peak_mb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return getattr(psutil.Process().memory_info(), "peak_wset", 0) / MiB or None


@dataclass
class Sensors:
    """What the monitor reads. `detect()` finds the real ones; tests pass fakes."""

    peak_rss_mb: Callable[[], float | None] = peak_rss_mb
    cuda_peak_mb: Callable[[], float] | None = None  # peak allocated since the last `cuda_reset()`
    cuda_reset: Callable[[], None] | None = None
    gpu_utilisation_pct: Callable[[], float] | None = None
    gpu_power_w: Callable[[], float] | None = None

    @property
    def has_gpu_meters(self) -> bool:
        return self.gpu_utilisation_pct is not None and self.gpu_power_w is not None


def detect() -> Sensors:
    """CUDA readings when CUDA is in use, NVML readings when `pynvml` also answers."""

    sensors = Sensors()
    if not torch.cuda.is_available():
        return sensors
    device = torch.cuda.current_device()
    sensors.cuda_peak_mb = lambda: torch.cuda.max_memory_allocated(device) / MiB
    sensors.cuda_reset = lambda: torch.cuda.reset_peak_memory_stats(device)
    try:  # torch maps the CUDA index to NVML's (CUDA_VISIBLE_DEVICES); raises without pynvml
        torch.cuda.utilization(device), torch.cuda.power_draw(device)
    except Exception:
        return sensors
    sensors.gpu_utilisation_pct = lambda: float(torch.cuda.utilization(device))
    sensors.gpu_power_w = lambda: torch.cuda.power_draw(device) / 1000.0  # milliwatts
    return sensors


class ResourceMonitor(TrainerCallback):
    """Adds `memory/*` and (with NVML) `gpu/*` readings to each training log.

    Put it before the metrics logger in the callbacks list. `sample_seconds`: how often the
    background thread reads utilisation and power (NVML's own window is 1/6 s to 1 s).
    """

    def __init__(self, sensors: Sensors | None = None, sample_seconds: float = 0.5) -> None:
        self.sensors = sensors
        self.sample_seconds = sample_seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gpu_sums = [0.0, 0.0, 0]  # utilisation, power, samples

    def on_train_begin(self, args, state, control, **kwargs):
        if self.sensors is None:
            self.sensors = detect()
        if self.sensors.cuda_reset is not None:
            self.sensors.cuda_reset()
        if self.sensors.has_gpu_meters and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample_loop, name="posttrain-gpu-meter", daemon=True)
            self._thread.start()

    def on_train_end(self, args, state, control, **kwargs):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.sample_seconds):
            self.sample()

    def sample(self) -> None:
        """One utilisation and power reading; a failing NVML turns the GPU meters off for the run."""
        sensors = self.sensors
        if sensors is None or not sensors.has_gpu_meters:
            return
        try:
            utilisation, power = sensors.gpu_utilisation_pct(), sensors.gpu_power_w()
        except Exception as exc:
            log.warning("GPU meters off for the rest of the run: NVML failed (%s)", exc)
            sensors.gpu_utilisation_pct = sensors.gpu_power_w = None
            return
        with self._lock:
            self._gpu_sums[0] += utilisation
            self._gpu_sums[1] += power
            self._gpu_sums[2] += 1

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "train_runtime" in logs or self.sensors is None:
            return
        logs.update(self.readings())

    def readings(self) -> dict[str, float]:
        """The log keys for the interval since the previous call, then start a new interval."""
        s, out = self.sensors, {}
        if not self._gpu_sums[2]:
            self.sample()  # an interval shorter than `sample_seconds` still gets a reading
        rss = s.peak_rss_mb() if s.peak_rss_mb is not None else None
        if rss is not None:
            out["memory/peak_rss_mb"] = rss
        if s.cuda_peak_mb is not None:
            out["memory/cuda_max_allocated_mb"] = s.cuda_peak_mb()
            if s.cuda_reset is not None:
                s.cuda_reset()
        with self._lock:
            utilisation, power, samples = self._gpu_sums
            self._gpu_sums = [0.0, 0.0, 0]
        if samples:
            out["gpu/utilisation_pct"] = utilisation / samples
            out["gpu/power_w"] = power / samples
        return out
