"""Memory per device of a planned run, before renting: weights, gradients, optimizer, KL reference,
activations and the rollout KV cache, under DDP, ZeRO-2, ZeRO-3 and FSDP2, for full fine-tuning,
LoRA and QLoRA.

Exact where the count is exact (weights, gradients and AdamW states follow from parameter counts and
dtypes; `tests/unit/telemetry/test_memory_plan.py` checks them against a built model's tensors);
estimates where they depend on kernels: activations follow Korthikanti et al. 2022 (34·s·b·h bytes
per layer in 16-bit without recomputation and attention scores never stored, as with SDPA/flash
attention; 2·s·b·h bytes per layer plus one layer's worth with gradient checkpointing) plus one fp32
logits tile of TRL's chunked log-prob kernel (4096 tokens x 32768 vocabulary entries: TRL 1.16 never
materialises the full logits); the KV cache is transformers' layout for the rollout batch.
"""

from __future__ import annotations

from dataclasses import dataclass

ENGINES = ("ddp", "zero2", "zero3", "fsdp2")  # recipes/accelerate/*.yaml
SETUPS = ("full", "lora", "qlora")
# Memory as sold (10^9 bytes); runs keep ~10% for the CUDA context, allocator and fragmentation.
GPUS: dict[str, float] = {
    "l4-24gb": 24e9,
    "rtx4090-24gb": 24e9,
    "a100-40gb": 40e9,
    "l40s-48gb": 48e9,
    "a100-80gb": 80e9,
    "h100-80gb": 80e9,
    "h200-141gb": 141e9,
    "b200-192gb": 192e9,
}
USABLE = 0.9
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
QLORA_BLOCK = 64  # bitsandbytes 4-bit blocksize: one fp32 absmax per block (nested quant: 8 bits)
LOGIT_TILE = (4096, 32768)  # trl.kernels.chunked_logprob: TOKEN_CHUNK_SIZE x vocabulary chunk, fp32


@dataclass(frozen=True)
class Workload:
    """What a GRPO step holds on one device, from the recipe."""

    weight_bytes: int  # per parameter: 2 in bf16/fp16, 4 in fp32
    beta: float  # KL coefficient: > 0 keeps a reference model (full fine-tuning; LoRA disables the adapter)
    micro_batch: int  # sequences in one forward/backward (grpo.per_device_train_batch_size)
    seq_len: int  # prompt + completion tokens
    rollout_sequences: int  # sequences one device generates together (batch x steps per generation)
    gradient_checkpointing: bool
    nested_quant: bool = False


@dataclass(frozen=True)
class Memory:
    """Bytes on one device, by component."""

    weights: float
    gradients: float
    optimizer: float
    reference: float
    activations: float
    kv_cache: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.reference + self.activations + self.kv_cache


def memory(shape, work: Workload, setup: str, engine: str, devices: int) -> Memory:
    """Per-device bytes of `setup` (full | lora | qlora) under `engine` on `devices` data-parallel GPUs.

    `shape`: a `posttrain.models.shape.ModelShape` (duck-typed: total, quantizable, lora, layers,
    hidden, vocab, kv_per_token). Adapters are fp32 (peft keeps them in fp32 on a 16-bit base), so are
    their gradients and AdamW states; a full fine-tune keeps gradients and both AdamW moments in the
    weights' dtype, as torch does.
    """
    if setup not in SETUPS or engine not in ENGINES:
        raise ValueError(f"setup {setup!r} / engine {engine!r}: expected one of {SETUPS} / {ENGINES}")
    if setup == "full":
        weights = shape.total * work.weight_bytes
        trainable_bytes = shape.total * work.weight_bytes
        reference = weights if work.beta > 0 else 0.0
    else:
        base = shape.total * work.weight_bytes
        if setup == "qlora":
            absmax = 1 if work.nested_quant else 4
            base = (shape.total - shape.quantizable) * work.weight_bytes + shape.quantizable * (
                0.5 + absmax / QLORA_BLOCK
            )
        weights = base + shape.lora * 4
        trainable_bytes = shape.lora * 4
        reference = 0.0  # the base with the adapter switched off is the reference
    gradients, optimizer = trainable_bytes, 2 * trainable_bytes
    if engine in ("zero2", "zero3", "fsdp2"):
        gradients, optimizer = gradients / devices, optimizer / devices
    if engine in ("zero3", "fsdp2"):
        weights, reference = weights / devices, reference / devices
    return Memory(weights, gradients, optimizer, reference, activations(shape, work), kv_cache(shape, work))


def activations(shape, work: Workload) -> float:
    tokens = work.micro_batch * work.seq_len
    scale = work.weight_bytes / 2  # the per-layer constants are for 16-bit activations
    per_layer = 34 * tokens * shape.hidden * scale
    held = (
        shape.layers * 2 * tokens * shape.hidden * scale + per_layer
        if work.gradient_checkpointing
        else (shape.layers * per_layer)
    )
    return held + min(tokens, LOGIT_TILE[0]) * min(shape.vocab, LOGIT_TILE[1]) * 4


def kv_cache(shape, work: Workload) -> float:
    return work.rollout_sequences * work.seq_len * shape.kv_per_token * work.weight_bytes


def fits(total: float, gpu: str) -> bool:
    return total <= USABLE * GPUS[gpu]


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f}"
