"""Scaled-dot-product attention: which backends run here and which one SDPA picks (`probe_sdpa`), and the
backend a profiled training step shows (`sdpa_from_profile`)."""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch

from tunebench.bench.measure import sync_device
from tunebench.system import exception_line, free_memory

SDPA_OP_BACKENDS = (("_scaled_dot_product_flash_attention", "flash"),
                    ("_scaled_dot_product_efficient_attention", "efficient"),
                    ("_scaled_dot_product_cudnn_attention", "cudnn"),
                    ("_scaled_dot_product_fused_attention_overrideable", "overrideable"),
                    ("_scaled_dot_product_attention_math", "math"))
KERNEL_MARKERS = ("flash", "fmha", "sdpa", "cudnn", "attention", "attn")


def _sdpa_backends() -> dict[str, Any]:
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": getattr(SDPBackend, "CUDNN_ATTENTION", None), "math": SDPBackend.MATH}


def _sdp_choice(q, k, v, attn_mask=None, is_causal=False) -> str:
    """The backend SDPA picks for these inputs with every backend allowed (torch's own selection, private API)."""
    try:
        chosen = int(torch._fused_sdp_choice(q, k, v, attn_mask, 0.0, is_causal))
    except Exception as e:  # noqa: BLE001 -- a private API: report what it said instead of failing the part
        return f"unknown ({exception_line(e)})"
    names = {int(b): n for n, b in _sdpa_backends().items() if b is not None}
    return names.get(chosen, f"backend {chosen}")


def _time_attention(q, k, v, kwargs: dict, iters: int, device: str) -> float:
    """Milliseconds per forward + backward of one attention call (after one untimed call)."""
    import torch.nn.functional as F

    def once():
        q.grad = k.grad = v.grad = None
        F.scaled_dot_product_attention(q, k, v, **kwargs).float().sum().backward()

    once()
    sync_device(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        once()
    sync_device(device)
    return 1000 * (time.perf_counter() - t0) / iters


def probe_sdpa(device: str, dtype: torch.dtype, batch: int, heads: int, seq: int, head_dim: int,
               iters: int) -> dict:
    """Each SDPA backend alone (torch.nn.attention.sdpa_kernel) on the model's attention shapes, causal (what a
    batch without padding runs: transformers passes is_causal and no mask) and with a boolean padding mask
    (dynamic padding), forward + backward; and the backend SDPA picks, with deterministic algorithms on and off."""
    from torch.nn.attention import sdpa_kernel

    g = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(batch, heads, seq, head_dim, device=device, dtype=dtype, generator=g).requires_grad_()
               for _ in range(3))
    keep = torch.ones(batch, seq, dtype=torch.bool, device=device)
    keep[batch // 2:, seq * 3 // 4:] = False            # half of the batch right-padded by a quarter
    mask = torch.ones(seq, seq, dtype=torch.bool, device=device).tril()[None, None] & keep[:, None, None, :]
    cases = {"causal": {"is_causal": True}, "padding_mask": {"attn_mask": mask}}
    out: dict[str, Any] = {"shape": {"batch": batch, "heads": heads, "seq": seq, "head_dim": head_dim,
                                     "dtype": str(dtype).removeprefix("torch.")}}
    for case, kwargs in cases.items():
        res: dict[str, Any] = {"chosen": _sdp_choice(q, k, v, kwargs.get("attn_mask"), kwargs.get("is_causal", False))}
        saved = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
        try:
            torch.use_deterministic_algorithms(True, warn_only=True)
            res["chosen_deterministic"] = _sdp_choice(q, k, v, kwargs.get("attn_mask"),
                                                      kwargs.get("is_causal", False))
        finally:
            torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        for name, backend in _sdpa_backends().items():
            if backend is None:
                res[name] = {"ok": False, "error": "not in this torch"}
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    with sdpa_kernel([backend]):
                        res[name] = {"ok": True, "fwd_bwd_ms": _time_attention(q, k, v, kwargs, iters, device)}
                except RuntimeError as e:
                    why = [str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()]
                    res[name] = {"ok": False, "error": exception_line(e), "why": why[:3]}
        res["runs"] = [n for n in _sdpa_backends() if res.get(n, {}).get("ok")]
        out[case] = res
    del q, k, v, mask
    free_memory()
    return out


def sdpa_from_profile(keys: list[str]) -> dict:
    """The SDPA ops and attention kernels in the names of a profiled step, and the backend they show."""
    ops = sorted({k for k in keys if "scaled_dot_product" in k})
    kernels = sorted({k for k in keys if not k.startswith("aten::") and "scaled_dot_product" not in k
                      and any(m in k.lower() for m in KERNEL_MARKERS)},
                     key=lambda k: (not any(m in k.lower() for m in ("kernel", "fmha", "cudnn")), k))  # GPU first
    used = sorted({name for op in ops for marker, name in SDPA_OP_BACKENDS if marker in op})
    return {"backends": used, "ops": ops, "kernels": [k[:160] for k in kernels[:12]]}
