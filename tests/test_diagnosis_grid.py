"""Correct code is never named: every catalogue entry, asked directly, over a grid of real networks.

``diagnose()`` stops before any entry runs when the two arrays agree (they are then "too close to
correct"), and the checks ask it about failing rows only, so a test through ``diagnose()`` alone
cannot see an entry that fires on correct numbers. Here each entry of ``CATALOGUE`` is called on
its own with the numbers of correct code: manual's gradients against JAX's, at the initial
parameters of networks of depth 1-3 (square layers among them, so that a transposed ``w`` fits),
every activation, every loss, batches of 1 to 7, float64 and float32, in the blog's layout and in
the three others; and on the batch norm and dropout layers of spec networks. No entry may match.
"""

import numpy as np
import pytest

from fcgrad import manual, reference
from fcgrad.diagnosis import catalogue
from fcgrad.diagnosis import toolbox as diagnosis_toolbox
from fcgrad.diagnosis.catalogue import CATALOGUE, Context, in_blog_layout, signature_tol
from fcgrad.diagnosis.layout import Layout, kind_of
from fcgrad.diagnosis.network import network_context
from fcgrad.engine.problems import random_problem
from fcgrad.engine.toolbox import make_problem
from fcgrad.manual import batches

# (sizes, activations, loss, N, dtype): every activation and loss, N = 1 (no 1/N to miss), 2, 3 (Bessel), up to 7
GRID = [
    ((3, 4, 2), "sigmoid", "square", 5, "float64"),
    ((3, 4, 2), "tanh", "square", 1, "float64"),
    ((4, 4, 4), "tanh", "square", 3, "float64"),  # square w: w and wᵀ both fit residual_x
    ((2, 6, 3, 1), "relu", "square", 7, "float64"),  # every ReLU dead at this seed: the layers' gradients all exactly 0
    ((4, 3), "identity", "cross-entropy", 6, "float64"),
    ((5, 5, 5), ("tanh", "identity"), "cross-entropy", 2, "float64"),
    ((3, 5, 3), ("sigmoid", "identity"), "hinge", 4, "float64"),
    ((3, 4, 2), ("tanh", "identity"), "bce-logits", 5, "float64"),
    ((3, 3, 2), "tanh", "mae", 6, "float64"),
    ((1, 1), "sigmoid", "square", 3, "float64"),
    ((4, 4, 4), "sigmoid", "square", 5, "float32"),
    ((3, 7, 5, 2), "relu", "cross-entropy", 7, "float32"),
]
GRID_IDS = [
    "-".join(map(str, s)) + f"-{a if isinstance(a, str) else ','.join(a)}-{lo}-N{n}-{dt}" for s, a, lo, n, dt in GRID
]
LAYOUTS = [Layout(), Layout("out,in"), Layout("in,out", "rows"), Layout("out,in", "rows")]


def entries_that_match(manual_array, reference_array, ctx: Context) -> list[str]:
    """The entries whose signature the manual array matches, each asked directly (diagnose's early exit skipped).

    The arrays go to the blog's layout first, as ``diagnose`` moves them, so that every entry sees what it
    would see there.
    """
    m, r = np.asarray(manual_array), np.asarray(reference_array)
    tol = signature_tol(m, r)
    shapes = (m.shape, r.shape)
    kind = kind_of(ctx.quantity)
    m = ctx.view.to_blog(kind, m.astype(np.float64))
    r = ctx.view.to_blog(kind, r.astype(np.float64))
    blog_ctx = in_blog_layout(ctx, shapes)
    hits = []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for name, entry in CATALOGUE.items():
            hit = entry(m, r, blog_ctx, tol)
            if hit is not None and hit[2] <= tol:
                hits.append(f"{name}: {hit[1]}")
    return hits


def _in_layout(ctx: Context, view: Layout) -> Context:
    """``ctx`` (blog layout) with every array moved to ``view``'s layout, as a user's code would hold them."""
    data = {k: view.from_blog("data", getattr(ctx, k)) for k in ("x", "z", "y", "upstream", "residual_z")}
    weights = {k: view.from_blog("weight", getattr(ctx, k)) for k in ("w", "grad_w")}
    others = tuple((words, view.from_blog("data", a)) for words, a in ctx.others)
    return Context(**{**ctx.__dict__, **data, **weights, "others": others, "layout": view})


def _correct_pairs(case):
    """(what, manual array, JAX array, blog-layout context) for every quantity of every layer of a correct net."""
    sizes, act, loss, n, dtype = case
    p = random_problem(list(sizes), activations=act, loss=loss, batch=n, seed=len(sizes) + n).with_options(
        dtype=dtype
    )
    common = dict(activations=p.activations, loss=p.loss, dtype=p.dtype)
    m = manual.gradients(p.params, p.x, p.t, **common)
    ref = reference.gradients(p.params, p.x, p.t, **common)
    _, caches = manual.forward(p.params, p.x, p.activations)
    values = [(f"layer {j} input", c.x) for j, c in enumerate(caches)] + [
        (f"layer {j} output", c.y) for j, c in enumerate(caches)
    ]
    yield "residual_y", m.residual_y, ref["residual_y"], Context(quantity="residual_y", n=p.batch, lr=p.lr)
    for i, layer in enumerate(m.layers):
        for q in manual.QUANTITIES:
            ctx = network_context(p, ref, i, q)
            others = tuple((w, a) for w, a in values if a.shape == ctx.x.shape and a is not caches[i].x)
            ctx = Context(**{**ctx.__dict__, "others": others})
            yield f"layer {i} {q}", getattr(layer, q), ref["layers"][i][q], ctx


@pytest.mark.parametrize("case", GRID, ids=GRID_IDS)
def test_no_entry_matches_correct_gradients_of_a_real_network(case):
    named = {}
    for what, m, r, ctx in _correct_pairs(case):
        for view in LAYOUTS:
            kind = kind_of(ctx.quantity)
            hits = entries_that_match(view.from_blog(kind, m), view.from_blog(kind, r), _in_layout(ctx, view))
            if hits:
                named[f"{what} ({view})"] = hits
    assert not named, named


# one net with every combination: batch norm and dropout in one layer, each alone, after three activations
SPEC_NETS = [("3-6:tanh:bn:drop0.3-5:sigmoid:drop0.5-4:relu:bn-2", 0)]


@pytest.mark.parametrize("spec, seed", SPEC_NETS, ids=[s for s, _ in SPEC_NETS])
@pytest.mark.slow
def test_no_entry_matches_correct_batchnorm_and_dropout_backwards(spec, seed, monkeypatch):
    rng = np.random.default_rng(seed)
    n_in, n_out = int(spec.split("-")[0]), int(spec.split("-")[-1])
    x = rng.standard_normal((n_in, 9))  # (in, N)
    t = np.eye(n_out)[:, rng.integers(0, n_out, 9)]  # (out, N) one-hot
    p = make_problem(spec, x, t, seed=seed)
    masks = batches.step_masks(p.spec, 9, np.random.default_rng([seed, 1]))
    asked, named = [], {}

    def every_entry(manual_array, reference_array, ctx):
        asked.append(ctx.quantity)
        if hits := entries_that_match(manual_array, reference_array, ctx):
            named[len(asked)] = hits
        return []

    monkeypatch.setattr(diagnosis_toolbox, "diagnose", every_entry)
    assert diagnosis_toolbox.diagnose_layers(p, p.params, masks) == {}
    assert asked, "no batch norm or dropout layer was asked about"
    assert not named, named


def test_an_entry_that_fires_on_everything_is_caught_here(monkeypatch):
    """The test above can fail: an entry that names every input is found on the first correct pair."""
    monkeypatch.setitem(catalogue.CATALOGUE, "everything", lambda m, r, ctx, tol: ("everything", "always", 0.0))
    what, m, r, ctx = next(_correct_pairs(GRID[0]))
    assert entries_that_match(m, r, ctx) == ["everything: always"]
    assert catalogue.diagnose(m, r, ctx) == []  # what diagnose() alone would have shown: nothing
