"""A two-layer MLP with batch normalisation and softmax cross-entropy, backward written term by term.

The manual backprop exercise: every intermediate of the forward gets a name (a tap), and the
backward derives ∂L/∂(each of them) from the one above, by hand. ``assert_derivation_matches``
holds every term to JAX's autodiff of the same forward and, when one is wrong, says which term is
the origin, which are only inherited from it, and what the mistake looks like.

Layout (the blog's): samples by column. x (D, N), w1 (D, H), b1 (H, 1), gain and shift (H, 1),
w2 (H, C), b2 (C, 1), one-hot targets t (C, N). Loss: −Σ t ⊙ log softmax(logits) / N.
Batch normalisation over the N columns of each row, variance with Bessel's 1/(N − 1).
"""

import numpy as np
import pytest

from fcgrad.derivation.report import assert_derivation_matches

EPS = 1e-5  # added to the variance before the inverse square root
D, H, C, N = 5, 8, 4, 16


def forward(tap, x, t, w1, b1, gain, shift, w2, b2):
    """Array API: the same code runs on NumPy (values) and under JAX (the reference's gradients)."""
    xp = x.__array_namespace__()
    n = x.shape[1]
    hprebn = tap("hprebn", w1.T @ x + b1)  # (H, D)·(D, N) + (H, 1) -> (H, N)
    bnmean = tap("bnmean", xp.sum(hprebn, axis=1, keepdims=True) / n)  # (H, 1)
    bndiff = tap("bndiff", hprebn - bnmean)  # (H, N)
    bndiff2 = tap("bndiff2", bndiff**2)  # (H, N)
    bnvar = tap("bnvar", xp.sum(bndiff2, axis=1, keepdims=True) / (n - 1))  # (H, 1), Bessel
    bnvar_inv = tap("bnvar_inv", (bnvar + EPS) ** -0.5)  # (H, 1)
    bnraw = tap("bnraw", bndiff * bnvar_inv)  # (H, N)
    hpreact = tap("hpreact", gain * bnraw + shift)  # (H, N)
    h = tap("h", xp.tanh(hpreact))  # (H, N)
    logits = tap("logits", w2.T @ h + b2)  # (C, H)·(H, N) + (C, 1) -> (C, N)
    shifted = tap("shifted", logits - xp.max(logits, axis=0, keepdims=True))  # (C, N), for exp's range
    counts = tap("counts", xp.exp(shifted))  # (C, N)
    counts_sum = tap("counts_sum", xp.sum(counts, axis=0, keepdims=True))  # (1, N)
    counts_sum_inv = tap("counts_sum_inv", counts_sum**-1)  # (1, N)
    probs = tap("probs", counts * counts_sum_inv)  # (C, N)
    logprobs = tap("logprobs", xp.log(probs))  # (C, N)
    return -xp.sum(t * logprobs) / n  # ()


def backward(g, v):
    """∂L/∂(each term), from the loss down; every line reads the terms above it from g."""
    n = v.x.shape[1]
    g["logprobs"] = -v.t / n  # (C, N)
    g["probs"] = g["logprobs"] / v.probs  # (C, N)
    g["counts_sum_inv"] = np.sum(g["probs"] * v.counts, axis=0, keepdims=True)  # (C, N) summed over C -> (1, N)
    g.add("counts", g["probs"] * v.counts_sum_inv)  # (C, N), through probs
    g["counts_sum"] = -g["counts_sum_inv"] * v.counts_sum**-2  # (1, N)
    g.add("counts", np.ones_like(v.counts) * g["counts_sum"])  # (C, N), through counts_sum
    g["shifted"] = g["counts"] * v.counts  # (C, N), exp' = exp
    g["logits"] = g["shifted"]  # (C, N); the max subtracted moves no loss: its gradient is 0
    g["h"] = v.w2 @ g["logits"]  # (H, C)·(C, N) -> (H, N)
    g["w2"] = v.h @ g["logits"].T  # (H, N)·(N, C) -> (H, C)
    g["b2"] = np.sum(g["logits"], axis=1, keepdims=True)  # (C, 1)
    g["hpreact"] = g["h"] * (1 - v.h**2)  # (H, N), tanh' = 1 − h²
    g["gain"] = np.sum(g["hpreact"] * v.bnraw, axis=1, keepdims=True)  # (H, 1)
    g["shift"] = np.sum(g["hpreact"], axis=1, keepdims=True)  # (H, 1)
    g["bnraw"] = g["hpreact"] * v.gain  # (H, N)
    g["bnvar_inv"] = np.sum(g["bnraw"] * v.bndiff, axis=1, keepdims=True)  # (H, 1)
    g.add("bndiff", g["bnraw"] * v.bnvar_inv)  # (H, N), through bnraw
    g["bnvar"] = -0.5 * g["bnvar_inv"] * (v.bnvar + EPS) ** -1.5  # (H, 1)
    g["bndiff2"] = np.ones_like(v.bndiff2) * g["bnvar"] / (n - 1)  # (H, N)
    g.add("bndiff", 2 * v.bndiff * g["bndiff2"])  # (H, N), through bndiff2
    g.add("hprebn", g["bndiff"])  # (H, N), through bndiff
    g["bnmean"] = -np.sum(g["bndiff"], axis=1, keepdims=True)  # (H, 1)
    g.add("hprebn", np.ones_like(v.hprebn) * g["bnmean"] / n)  # (H, N), through bnmean
    g["w1"] = v.x @ g["hprebn"].T  # (D, N)·(N, H) -> (D, H)
    g["b1"] = np.sum(g["hprebn"], axis=1, keepdims=True)  # (H, 1)


def backward_with_mistakes(g, v):
    """The same backward with five planted mistakes, each marked MISTAKE; the rest is unchanged."""
    n = v.x.shape[1]
    g["logprobs"] = -v.t  # (C, N)  MISTAKE: the loss's 1/N dropped
    g["probs"] = g["logprobs"] / v.probs  # (C, N)
    g["counts_sum_inv"] = np.sum(g["probs"] * v.counts, axis=0, keepdims=True)  # (1, N)
    g.add("counts", g["probs"] * v.counts_sum_inv)  # (C, N)
    g["counts_sum"] = -g["counts_sum_inv"] * v.counts_sum**-2  # (1, N)
    g.add("counts", np.ones_like(v.counts) * g["counts_sum"])  # (C, N)
    g["shifted"] = g["counts"] * v.counts  # (C, N)
    g["logits"] = g["shifted"]  # (C, N)
    g["h"] = v.w2 @ g["logits"]  # (H, N)
    g["w2"] = g["logits"] @ v.h.T  # (C, H)  MISTAKE: transposed, w2 is (H, C)
    g["b2"] = np.sum(g["logits"], axis=1)  # (C,)  MISTAKE: keepdims lost, b2 is (C, 1)
    g["hpreact"] = g["h"] * (1 - v.h)  # (H, N)  MISTAKE: tanh' written as 1 − h
    g["gain"] = np.sum(g["hpreact"] * v.bnraw, axis=1, keepdims=True)  # (H, 1)
    g["shift"] = np.sum(g["hpreact"], axis=1, keepdims=True)  # (H, 1)
    g["bnraw"] = g["hpreact"] * v.gain  # (H, N)
    g["bnvar_inv"] = np.sum(g["bnraw"] * v.bndiff, axis=1, keepdims=True)  # (H, 1)
    g.add("bndiff", g["bnraw"] * v.bnvar_inv)  # (H, N)
    g["bnvar"] = -0.5 * g["bnvar_inv"] * (v.bnvar + EPS) ** -1.5  # (H, 1)
    g["bndiff2"] = np.ones_like(v.bndiff2) * g["bnvar"] / n  # (H, N)  MISTAKE: 1/N, the forward has 1/(N − 1)
    g.add("bndiff", 2 * v.bndiff * g["bndiff2"])  # (H, N)
    g.add("hprebn", g["bndiff"])  # (H, N)
    g["bnmean"] = -np.sum(g["bndiff"], axis=1, keepdims=True)  # (H, 1)
    g.add("hprebn", np.ones_like(v.hprebn) * g["bnmean"] / n)  # (H, N)
    g["w1"] = v.x @ g["hprebn"].T  # (D, H)
    g["b1"] = np.sum(g["hprebn"], axis=1, keepdims=True)  # (H, 1)


# The planted mistakes: term -> the catalogue entry that must name it.
PLANTED = {
    "logprobs": "missing_1_over_n",
    "w2": "transposed",
    "b2": "keepdims_lost",
    "hpreact": "tanh_prime_as_one_minus_y",
    "bndiff2": "scaled",  # (N − 1)/N: Bessel's correction mixed up
}


def problem(seed: int = 0, n: int = N):
    """Parameters and data of one batch: random weights, gain near 1, one-hot targets."""
    rng = np.random.default_rng(seed)
    params = {
        "w1": rng.standard_normal((D, H)) / np.sqrt(D),
        "b1": 0.1 * rng.standard_normal((H, 1)),
        "gain": 1 + 0.1 * rng.standard_normal((H, 1)),
        "shift": 0.1 * rng.standard_normal((H, 1)),
        "w2": rng.standard_normal((H, C)) / np.sqrt(H),
        "b2": 0.1 * rng.standard_normal((C, 1)),
    }
    data = {"x": rng.standard_normal((D, n)), "t": np.eye(C)[:, rng.integers(0, C, size=n)]}
    return params, data


@pytest.mark.parametrize("seed, n", [(0, 16), (1, 8), (2, 32)], ids=["N16", "N8", "N32"])
def test_the_batchnorm_backward_matches_jax_term_by_term(seed, n):
    report = assert_derivation_matches(forward, backward, *problem(seed, n))
    assert [r.verdict for r in report.rows] == ["ok"] * len(report.rows)
    assert all(not r.diagnoses for r in report.rows)


def test_each_planted_mistake_is_an_origin_named_by_the_catalogue():
    with pytest.raises(AssertionError) as failure:
        assert_derivation_matches(forward, backward_with_mistakes, *problem())
    from fcgrad.derivation.checker import check_derivation

    report = check_derivation(forward, backward_with_mistakes, *problem())
    origins = {r.name: [d.name for d in r.diagnoses] for r in report.origins}
    assert set(origins) == set(PLANTED)
    for term, entry in PLANTED.items():
        assert origins[term][:1] == [entry], (term, origins[term])
    assert "looks like a missing 1/N: manual is exactly 16 × JAX" in str(failure.value)
    # everything computed below the first mistake and not planted itself is inherited, never an origin
    inherited = {r.name: r.inherits_from for r in report.rows if r.verdict == "inherited"}
    assert "w1" in inherited and "logprobs" in inherited["w1"] and "hpreact" in inherited["w1"]
