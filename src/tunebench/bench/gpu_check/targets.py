"""The study's throughput and memory targets, evaluated on the check's measured summary."""

from __future__ import annotations

# The study's throughput and memory targets, evaluated on the measured figures (never asserted).
TARGETS = {
    "full_mfu": {"what": "full fine-tuning MFU at the study's batch", "op": ">=", "threshold": 0.45},
    "lora_tokens_per_s_over_full": {"what": "LoRA tokens/s / full fine-tuning tokens/s", "op": ">=", "threshold": 1.3},
    "lora_peak_memory_over_full": {"what": "LoRA peak memory / full fine-tuning peak memory", "op": "<=",
                                   "threshold": 0.5},
}


def evaluate_targets(summary: dict) -> dict:
    """The targets on the measured summary: value, threshold and met (None when a figure is missing)."""
    full, lora = summary.get("full") or {}, summary.get("lora") or {}

    def ratio(a, b):
        return a / b if a is not None and b else None

    values = {"full_mfu": full.get("mfu"),
              "lora_tokens_per_s_over_full": ratio(lora.get("tokens_per_s"), full.get("tokens_per_s")),
              "lora_peak_memory_over_full": ratio(lora.get("peak_memory_bytes"), full.get("peak_memory_bytes"))}
    out = {}
    for key, t in TARGETS.items():
        v = values[key]
        met = None if v is None else (v >= t["threshold"] if t["op"] == ">=" else v <= t["threshold"])
        out[key] = {**t, "value": v, "met": met}
    return out
