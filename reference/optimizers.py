"""The optimizers of the reference side are optax's own: nothing here re-implements an update rule.

``build(name, lr, hyper)`` maps fcgrad's names to optax's constructors. Hyperparameters may be
Python floats or traced JAX scalars, so one compiled step serves every value of them. optax itself is imported
on first use: a run without an optimizer (the blog's SGD) starts without it.
"""

import jax
import numpy as np

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")


def build(name: str, lr, hyper):
    """The optax transformation (``optax.GradientTransformation``) for ``name`` with learning rate ``lr`` and the
    hyperparameters ``hyper``."""
    import optax

    if name == "sgd":
        return optax.sgd(lr)
    if name in ("momentum", "nesterov"):
        return optax.sgd(lr, momentum=hyper["momentum"], nesterov=name == "nesterov")
    if name == "rmsprop":
        return optax.rmsprop(lr, decay=hyper["decay"], eps=hyper["eps"], initial_scale=hyper["initial_scale"])
    if name == "adam":
        return optax.adam(lr, b1=hyper["b1"], b2=hyper["b2"], eps=hyper["eps"], eps_root=hyper["eps_root"])
    if name == "adamw":
        return optax.adamw(
            lr,
            b1=hyper["b1"],
            b2=hyper["b2"],
            eps=hyper["eps"],
            eps_root=hyper["eps_root"],
            weight_decay=hyper["weight_decay"],
        )
    raise ValueError(f"optimizer: expected one of {list(OPTIMIZERS)}, got {name!r}")


def state_moments(name: str, opt_state) -> dict:
    """The moments inside optax's state, under the names ``manual.optimizers`` uses.

    sgd with momentum: ``trace``; rmsprop: ``nu``; adam(w): ``count``, ``mu``, ``nu``; sgd: nothing.
    The first transformation of each chain holds them.
    """
    first = opt_state[0]
    if name in ("momentum", "nesterov"):
        return {"trace": first.trace}
    if name == "rmsprop":
        return {"nu": first.nu}
    if name in ("adam", "adamw"):
        return {"count": first.count, "mu": first.mu, "nu": first.nu}
    return {}


def with_moments(name: str, opt_state, moments: dict):
    """optax's state with the moments of ``state_moments``'s names replaced (arrays of the state's own dtypes).

    The inverse of ``state_moments``: it lets one optax step start from another implementation's state. The new
    moments are NumPy arrays (converted on the host, as a compiled step takes them): a jitted optax update
    accepts them as they are.
    """
    if not moments:
        return opt_state
    first = opt_state[0]
    fields = {k: jax.tree.map(lambda old, new: np.asarray(new, np.dtype(old.dtype)), getattr(first, k), v)
              for k, v in moments.items()}  # fmt: skip
    return (first._replace(**fields), *opt_state[1:])


def apply_updates(params, updates):
    """optax's own parameter update: ``params + updates``, leaf by leaf."""
    import optax

    return optax.apply_updates(params, updates)
