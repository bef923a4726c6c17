"""What the check keeps of one real run (`summarize_run`)."""

from __future__ import annotations

from pathlib import Path


def summarize_run(rec: dict, rdir: Path, policy: dict, elapsed_s: float) -> dict:
    """What the check keeps of one real run: status, test metric, the precision record (checked against the
    policy), and whether the adapter was saved (LoRA; full fine-tuning saves a model only when asked)."""
    primary = rec.get("primary_metric")
    precision = rec.get("precision") or {}
    keys = ("name", "trainable_dtype", "optimizer_state_dtype", "compute_dtype")
    recorded = all(precision.get(k) for k in keys)
    as_policy = recorded and all(precision[k] == policy[k] for k in keys)
    lora = rec.get("method") == "lora"
    adapter = (rdir / "adapter" / "adapter_config.json").is_file()
    ok = rec.get("status") == "ok"
    return {
        "status": rec.get("status"), "reason": rec.get("reason"), "run_id": rec.get("run_id"), "run_dir": str(rdir),
        "primary_metric": primary, "test_metric": (rec.get("test") or {}).get(primary),
        "best_validation": (rec.get("best_validation") or {}).get("value"), "steps": rec.get("steps"),
        "device": rec.get("device"), "precision": precision or None, "precision_recorded": recorded,
        "precision_as_policy": as_policy, "adapter_saved": adapter if lora else None,
        "wall_s": (rec.get("timing") or {}).get("wall_s"), "elapsed_s": elapsed_s,
        "tokens_per_s": (rec.get("tokens") or {}).get("tokens_per_s"),
        "peak_memory_bytes": (rec.get("memory") or {}).get("peak_bytes"),
        "checks_passed": ok and recorded and as_policy and (adapter or not lora),
    }
