"""Weight-update spectra on hand-made matrices with known answers (tunebench.analysis.spectrum)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tunebench.analysis.spectrum import (
    count_intruders,
    effective_rank,
    energy_rank,
    intruder_similarities,
    module_info,
    singular_values,
    stable_rank,
    summarize_spectrum,
    update_spectrum,
)

BASE_S = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])  # distinct, so the base's singular vectors are unique


def orthonormal(n: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q  # (n, n)


@pytest.fixture()
def base():
    """W_b = U diag(6..1) V^T, (8, 6) with full column rank, and the two unit vectors orthogonal to U."""
    q = orthonormal(8, 0)
    u, complement = q[:, :6], q[:, 6:]      # (8, 6), (8, 2)
    v = orthonormal(6, 1)                   # (6, 6)
    return u, v, complement, u @ np.diag(BASE_S) @ v.T


# ---------------------------------------------------------------- rank measures


def test_rank_three_update_with_equal_singular_values_has_rank_three_by_every_measure():
    u, v = orthonormal(8, 2)[:, :3], orthonormal(6, 3)[:, :3]
    delta = u @ np.diag([2.0, 2.0, 2.0]) @ v.T                   # (8, 6), rank 3
    s = singular_values(delta)
    assert energy_rank(s) == 3
    assert energy_rank(s, energy=2 / 3) == 2                     # an exact tie is not lost to rounding
    assert effective_rank(s) == pytest.approx(3.0, rel=1e-12)    # exp(ln 3)
    assert stable_rank(s) == pytest.approx(3.0, rel=1e-12)


def test_rank_three_update_ranks_never_exceed_three():
    rng = np.random.default_rng(4)
    delta = rng.standard_normal((8, 3)) @ rng.standard_normal((3, 6))  # (8, 6), rank 3
    s = singular_values(delta)
    for energy in (0.3, 0.5, 0.9, 0.99, 1.0):
        assert 1 <= energy_rank(s, energy) <= 3
    assert energy_rank(s, 1.0) == 3
    assert 1 <= effective_rank(s) <= 3 + 1e-9   # three float-zero singular values add nothing measurable
    assert 1 <= stable_rank(s) <= 3


def test_energy_rank_counts_the_energy_share():
    s = [10.0, 1.0, 1.0]                        # energies 100, 1, 1 of 102
    assert energy_rank(s, 0.9) == 1             # 100/102 = 0.980
    assert energy_rank(s, 0.99) == 2            # 101/102 = 0.990
    assert energy_rank(s, 1.0) == 3
    assert energy_rank([1.0, 10.0, 1.0], 0.9) == 1   # order of the input does not matter


def test_roy_vetterli_effective_rank_by_hand():
    # p = s / sum s, effective rank = exp(-sum p ln p), 0 ln 0 = 0 (Roy and Vetterli, 2007)
    assert effective_rank([1.0, 1.0, 0.0, 0.0]) == pytest.approx(2.0, rel=1e-15)   # p = (1/2, 1/2): exp(ln 2)
    # s = [3, 1]: p = (3/4, 1/4), exp(-(3/4) ln(3/4) - (1/4) ln(1/4)) = (4/3)^(3/4) 4^(1/4) = 4 / 3^(3/4)
    assert effective_rank([3.0, 1.0]) == pytest.approx(4 / 3**0.75, rel=1e-15)
    assert 4 / 3**0.75 == pytest.approx(1.7547654)
    assert effective_rank([5.0]) == 1.0 and effective_rank([1.0, 3.0]) == effective_rank([3.0, 1.0])
    assert effective_rank([30.0, 10.0]) == pytest.approx(effective_rank([3.0, 1.0]), rel=1e-15)  # scale-free
    # the two ranks differ: [3, 1] holds 9/10 of its energy in s_1, so its 90%-energy rank is 1
    assert energy_rank([3.0, 1.0], 0.9) == 1 and energy_rank([3.0, 1.0], 0.95) == 2
    assert effective_rank(singular_values(np.diag([3.0, 1.0, 0.0]))) == pytest.approx(4 / 3**0.75, rel=1e-12)


def test_stable_rank_of_singular_values_three_and_four_is_25_over_16():
    assert stable_rank([3.0, 4.0]) == 25 / 16
    assert stable_rank(singular_values(np.diag([3.0, 4.0]))) == pytest.approx(25 / 16, rel=1e-12)


def test_zero_update_has_rank_zero():
    s = singular_values(np.zeros((5, 4)))
    assert energy_rank(s) == 0
    assert effective_rank(s) == 0.0
    assert stable_rank(s) == 0.0


def test_energy_rank_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match="energy"):
        energy_rank([1.0], energy=0)


# ---------------------------------------------------------------- intruder dimensions


def test_rotation_among_the_bases_own_singular_vectors_gives_no_intruders(base):
    u, v, _, w_before = base
    perm = [3, 0, 5, 1, 4, 2]
    signs = np.array([1, -1, 1, -1, 1, 1])      # a flipped singular vector is the same direction
    w_after = (u * signs) @ np.diag(BASE_S[perm] * 1.7) @ v.T
    assert count_intruders(w_before, w_after, top_k=6) == 0
    np.testing.assert_allclose(intruder_similarities(w_before, w_after, top_k=6), 1.0, atol=1e-12)


def test_unchanged_matrix_has_no_intruders(base):
    w = base[3]
    assert count_intruders(w, w) == 0


def test_an_added_orthogonal_direction_with_a_large_singular_value_is_one_intruder(base):
    u, v, complement, w_before = base
    sigma = 10.0
    # W_after = W_b + sigma * u_new v_6^T with u_new orthogonal to every base left singular vector: the last
    # triplet becomes (sqrt(1 + sigma^2), (u_6 + sigma u_new) / norm, v_6), the others are unchanged. Its
    # largest |cos| with the base is |cos(., u_6)| = 1 / sqrt(1 + sigma^2) = 0.0995 < 0.5.
    w_after = w_before + sigma * np.outer(complement[:, 0], v[:, 5])
    assert count_intruders(w_before, w_after, top_k=10, eps=0.5) == 1
    sims = intruder_similarities(w_before, w_after, top_k=10)
    assert sims.shape == (6,)                                      # only min(d_out, d_in) vectors exist
    assert sims[0] == pytest.approx(1 / math.sqrt(1 + sigma**2), abs=1e-12)   # the new top direction
    np.testing.assert_allclose(sims[1:], 1.0, atol=1e-12)
    assert count_intruders(w_before, w_after, top_k=1) == 1


def test_a_weak_new_direction_is_an_intruder_only_within_the_top_k(base):
    u, v, complement, w_before = base
    # sigma 2: singular value sqrt(5) = 2.236 ranks 5th (6, 5, 4, 3, 2.236, 2); |cos| = 1/sqrt(5) = 0.447
    w_after = w_before + 2.0 * np.outer(complement[:, 0], v[:, 5])
    assert count_intruders(w_before, w_after, top_k=4) == 0
    assert count_intruders(w_before, w_after, top_k=5) == 1
    assert count_intruders(w_before, w_after, top_k=5, eps=0.4) == 0   # 0.447 is not below 0.4


def test_a_new_direction_close_to_a_base_one_is_not_an_intruder(base):
    u, v, complement, w_before = base
    # sigma 1: |cos(., u_6)| = 1/sqrt(2) = 0.707 >= 0.5
    w_after = w_before + 1.0 * np.outer(complement[:, 0], v[:, 5])
    assert count_intruders(w_before, w_after) == 0


def test_intruders_accept_torch_tensors_of_any_float_dtype(base):
    u, v, complement, w_before = base
    w_after = w_before + 10.0 * np.outer(complement[:, 0], v[:, 5])
    wb = torch.tensor(w_before, dtype=torch.bfloat16)
    wa = torch.tensor(w_after, dtype=torch.float32)
    assert count_intruders(wb, wa) == 1


def test_intruders_need_matching_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        count_intruders(np.eye(3), np.eye(4))


# ---------------------------------------------------------------- one matrix, many matrices


def test_update_spectrum_of_a_known_update(base):
    u, v, complement, w_before = base
    delta = 10.0 * np.outer(complement[:, 0], v[:, 5])     # rank 1, ||dW||_F = 10
    out = update_spectrum(w_before, delta)
    assert out["shape"] == [8, 6]
    assert out["energy_rank"] == 1
    assert out["effective_rank"] == pytest.approx(1.0, rel=1e-9)
    assert out["stable_rank"] == pytest.approx(1.0)
    assert out["intruders"] == 1
    assert out["top_singular_values"][0] == pytest.approx(10.0)
    assert len(out["top_singular_values"]) == 6
    assert out["fro_norm"] == pytest.approx(10.0)
    assert out["rel_fro_norm"] == pytest.approx(10.0 / math.sqrt((BASE_S**2).sum()))


def test_module_info_names_layer_type_and_group():
    assert module_info("model.layers.3.self_attn.k_proj") == {"layer": 3, "type": "k_proj", "group": "attention"}
    assert module_info("model.layers.12.mlp.down_proj") == {"layer": 12, "type": "down_proj", "group": "mlp"}
    assert module_info("score") == {"layer": None, "type": "score", "group": "other"}


def test_summary_means_and_totals_per_group():
    rows = [
        {"group": "attention", "energy_rank": 2, "effective_rank": 1.5, "stable_rank": 1.5, "intruders": 1,
         "fro_norm": 3.0},
        {"group": "attention", "energy_rank": 4, "effective_rank": 3.5, "stable_rank": 2.5, "intruders": 0,
         "fro_norm": 4.0},
        {"group": "mlp", "energy_rank": 9, "effective_rank": 7.0, "stable_rank": 5.0, "intruders": 2,
         "fro_norm": 12.0},
    ]
    s = summarize_spectrum(rows)
    assert s["n_matrices"] == 3
    assert s["mean_energy_rank"] == 5.0
    assert s["max_energy_rank"] == 9
    assert s["mean_effective_rank"] == 4.0
    assert s["mean_stable_rank"] == 3.0
    assert s["intruders_total"] == 3
    assert s["fro_norm_total"] == 13.0                      # sqrt(9 + 16 + 144)
    assert s["by_group"]["attention"] == {"n_matrices": 2, "mean_energy_rank": 3.0, "max_energy_rank": 4,
                                          "mean_effective_rank": 2.5, "mean_stable_rank": 2.0,
                                          "intruders_total": 1, "fro_norm_total": 5.0}
    assert s["by_group"]["mlp"]["intruders_total"] == 2


def test_methods_text_defines_both_ranks_under_their_own_names():
    from tunebench.analysis.texts import analysis_methods_text

    spectra = analysis_methods_text()[0]
    assert "Energy rank (90%): the smallest k with s_1^2 + ... + s_k^2 >= 0.9 ||dW||_F^2" in spectra
    assert "Biderman et al., 2024" in spectra
    assert "Effective rank (Roy-Vetterli): exp(-sum_i p_i ln p_i) with p_i = s_i / sum_j s_j" in spectra
    assert "Roy and Vetterli, 2007" in spectra
    assert "Energy rank (80%)" in analysis_methods_text(energy=0.8)[0]
