"""Weight-update spectra: matrices in, numbers out (no files, no models).

For one adapted matrix with pretrained weight W_before (d_out, d_in) and fine-tuned weight W_after:
  dW              = W_after - W_before (LoRA: the merged update B @ A * scale); s_1 >= s_2 >= ... its
                    singular values
  energy rank     = the smallest k with sum_{i<=k} s_i^2 >= energy * sum_i s_i^2 (energy 0.9: the rank that
                    explains 90% of the update's energy, the measure Biderman et al., 2024, "LoRA Learns Less
                    and Forgets Less", use for the rank of the perturbation; an integer). Key `energy_rank`.
  effective rank  = exp(H(p)) with p_i = s_i / sum_j s_j and H(p) = -sum_i p_i ln p_i (0 ln 0 = 0): Roy and
                    Vetterli, 2007, "The effective rank: a measure of effective dimensionality" (EUSIPCO).
                    Real-valued, 1 for a rank-one update, r for r equal singular values, and never above the
                    rank. Key `effective_rank`. Unlike the energy rank (squares) the entropy of s also counts
                    rounding noise: a LoRA update of rank r computed in fp32 has min(d_out, d_in) - r singular
                    values of about 1e-7 s_1, which would lift it above r. `update_spectrum` therefore counts
                    singular values at or below numpy.linalg.matrix_rank's tolerance, s_1 max(d_out, d_in) eps
                    (eps of the SVD's dtype), as zero for this measure. (analysis.json before schema 2 stored
                    the energy rank under this key; tunebench.analysis.tables.upgrade_analysis renames it.)
  stable rank     = ||dW||_F^2 / ||dW||_2^2 = sum_i s_i^2 / s_1^2 (a smooth lower bound on the rank)
  intruders       = among the top_k left singular vectors u_j of W_after, those with
                    max_i |cos(u_j, u_i^before)| < eps over every left singular vector of W_before
                    (Shuttleworth et al., 2024, "LoRA vs Full Fine-tuning: An Illusion of Equivalence", their
                    definition of an intruder dimension; top_k 10 and eps 0.5 as in PEFT's
                    `peft.tuners.lora.intruders.reduce_intruder_dimension`, which applies the same test, absolute
                    cosine included, to the merged LoRA weight; tests/test_analysis_lora.py checks we agree).
The SVDs are thin (`full_matrices=False`): the singular vectors that carry a singular value. For a tall
matrix (d_out > d_in, e.g. up_proj) the completion of U to a basis of R^d_out is arbitrary, so it is not
compared against (PEFT does the same).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np
import torch

ATTENTION_TYPES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TYPES = ("gate_proj", "up_proj", "down_proj")
N_TOP_SINGULAR_VALUES = 16
# Cumulative energies are compared with a relative tolerance so that exact ties (three equal singular
# values and energy 2/3) are not lost to rounding in the last bit.
_ENERGY_RTOL = 1e-9

Matrix = torch.Tensor | np.ndarray


# ---------------------------------------------------------------- conversions


def as_tensor(m: Matrix) -> torch.Tensor:
    """A 2-D floating tensor; half precision is upcast to float32 (torch's SVD has no fp16/bf16 kernel)."""
    t = torch.as_tensor(m)
    if t.ndim != 2:
        raise ValueError(f"expected a matrix, got shape {tuple(t.shape)}")
    if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t


def singular_values(m: Matrix) -> np.ndarray:
    """Singular values, descending, as float64 numpy."""
    return torch.linalg.svdvals(as_tensor(m)).double().cpu().numpy()  # (min(d_out, d_in),)


# ---------------------------------------------------------------- rank measures


def energy_rank(s: Iterable[float], energy: float = 0.9) -> int:
    """Smallest k with sum_{i<=k} s_i^2 >= energy * sum_i s_i^2 (Biderman et al., 2024); 0 for a zero update."""
    if not 0 < energy <= 1:
        raise ValueError(f"energy {energy}: must be in (0, 1]")
    s2 = np.sort(np.asarray(list(s), dtype=np.float64) ** 2)[::-1]
    total = s2.sum()
    if total == 0:
        return 0
    cumulative = np.cumsum(s2)
    return int(np.searchsorted(cumulative, energy * total * (1 - _ENERGY_RTOL)) + 1)


def effective_rank(s: Iterable[float]) -> float:
    """Roy and Vetterli's (2007) effective rank exp(-sum_i p_i ln p_i), p_i = s_i / sum_j s_j, zero singular
    values contributing nothing (0 ln 0 = 0); 0 for a zero update. s = [1, 1, 0, 0] gives 2, s = [3, 1] gives
    exp(-(3/4) ln(3/4) - (1/4) ln(1/4)) = 4 / 3^(3/4) = 1.7548."""
    s = np.abs(np.asarray(list(s), dtype=np.float64))
    total = s.sum()
    if total == 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def stable_rank(s: Iterable[float]) -> float:
    """||dW||_F^2 / ||dW||_2^2 from the singular values; 0 for a zero update."""
    s = np.asarray(list(s), dtype=np.float64)
    top = float(s.max()) if s.size else 0.0
    return float((s**2).sum() / top**2) if top > 0 else 0.0


# ---------------------------------------------------------------- intruder dimensions


def intruder_similarities(w_before: Matrix, w_after: Matrix, top_k: int = 10) -> np.ndarray:
    """For each of W_after's top_k left singular vectors u_j: max_i |cos(u_j, u_i^before)| (Shuttleworth
    et al., 2024). Singular vectors are unit vectors, so the cosine is the dot product; its sign is arbitrary
    (u and -u are the same direction), hence the absolute value."""
    wb, wa = as_tensor(w_before), as_tensor(w_after)
    if wb.shape != wa.shape:
        raise ValueError(f"shapes differ: {tuple(wb.shape)} vs {tuple(wa.shape)}")
    dtype = torch.promote_types(wb.dtype, wa.dtype)
    u_before = torch.linalg.svd(wb.to(dtype), full_matrices=False).U     # (d_out, min(d_out, d_in))
    u_after = torch.linalg.svd(wa.to(dtype), full_matrices=False).U      # (d_out, min(d_out, d_in))
    u_top = u_after[:, :top_k]                                            # (d_out, k)
    cos = (u_top.T @ u_before).abs()                                      # (k, min(d_out, d_in))
    return cos.max(dim=1).values.double().cpu().numpy()                   # (k,)


def count_intruders(w_before: Matrix, w_after: Matrix, top_k: int = 10, eps: float = 0.5) -> int:
    """Number of intruder dimensions among W_after's top_k left singular vectors (similarity < eps)."""
    if top_k < 1:
        raise ValueError(f"top_k {top_k}: must be at least 1")
    return int((intruder_similarities(w_before, w_after, top_k) < eps).sum())


# ---------------------------------------------------------------- one matrix, many matrices


def update_spectrum(w_before: Matrix, delta: Matrix, w_after: Matrix | None = None, *, top_k: int = 10,
                    eps: float = 0.5, energy: float = 0.9) -> dict:
    """Every measure of one update dW = W_after - W_before. `w_after` defaults to W_before + dW (pass the
    merged weight when it is at hand: LoRA's dW is exact from the factors, W_after from the merge)."""
    wb, d = as_tensor(w_before), as_tensor(delta)
    wa = as_tensor(w_after) if w_after is not None else wb + d.to(wb.dtype)
    s = singular_values(d)
    tol = (s[0] if s.size else 0.0) * max(d.shape) * torch.finfo(d.dtype).eps   # numpy.linalg.matrix_rank's
    base_fro = float(torch.linalg.matrix_norm(wb.double()))
    fro = float(np.sqrt((s**2).sum()))
    return {
        "shape": list(d.shape),
        "energy_rank": energy_rank(s, energy),
        "effective_rank": effective_rank(np.where(s > tol, s, 0.0)),
        "stable_rank": stable_rank(s),
        "intruders": count_intruders(wb, wa, top_k, eps),
        "top_singular_values": s[:N_TOP_SINGULAR_VALUES].tolist(),
        "fro_norm": fro,
        "rel_fro_norm": fro / base_fro if base_fro > 0 else math.nan,   # ||dW||_F / ||W_before||_F
    }


def module_info(name: str) -> dict:
    """`model.layers.3.mlp.up_proj` -> {"layer": 3, "type": "up_proj", "group": "mlp"}."""
    match = re.search(r"\blayers\.(\d+)\.", name)
    kind = name.rsplit(".", 1)[-1]
    group = "attention" if kind in ATTENTION_TYPES else "mlp" if kind in MLP_TYPES else "other"
    return {"layer": int(match.group(1)) if match else None, "type": kind, "group": group}


def summarize_spectrum(rows: list[dict]) -> dict:
    """Means over matrices and the intruder total, overall and per group (attention / mlp / other)."""
    summary = _summarize(rows)
    groups = sorted({r["group"] for r in rows})
    summary["by_group"] = {g: _summarize([r for r in rows if r["group"] == g]) for g in groups}
    return summary


def _summarize(rows: list[dict]) -> dict:
    if not rows:
        return {"n_matrices": 0, "mean_energy_rank": math.nan, "max_energy_rank": 0,
                "mean_effective_rank": math.nan, "mean_stable_rank": math.nan, "intruders_total": 0,
                "fro_norm_total": 0.0}
    return {
        "n_matrices": len(rows),
        "mean_energy_rank": float(np.mean([r["energy_rank"] for r in rows])),
        "max_energy_rank": int(max(r["energy_rank"] for r in rows)),
        "mean_effective_rank": float(np.mean([r["effective_rank"] for r in rows])),
        "mean_stable_rank": float(np.mean([r["stable_rank"] for r in rows])),
        "intruders_total": int(sum(r["intruders"] for r in rows)),
        # sqrt(sum ||dW||_F^2): the norm of the whole update over the analysed matrices
        "fro_norm_total": float(np.sqrt(sum(r["fro_norm"] ** 2 for r in rows))),
    }
