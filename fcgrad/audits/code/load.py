"""Loading a user's network file and recognising which protocol of ``audit --code`` it follows.

The protocols (README, "The protocols of audit --code", has an example of each):
- **classes** (the blog's shape) and **store-then-update**: a network class holding layers with
  ``forward(x)`` and ``backward(residual)`` and a loss (``fcgrad.audits.code.layers``);
- **train_step**: a network class with ``train_step(X, T)``, ``fit(X, T, epochs)`` or
  ``update_mini_batch(batch, eta)`` (``fcgrad.audits.code.train``);
- **step**: a function ``step(params, X, T, lr)`` (``fcgrad.audits.code.step``);
- **functions**: ``forward(params, X)`` and ``backward(params, cache, T)``, or the courses' ``L_model_forward``
  and ``L_model_backward`` (``fcgrad.audits.code.functions``);
- **loss_grads**: a network class whose ``loss(X, y=None, reg)`` returns (loss, grads) (``fcgrad.audits.code.returns``);
- **build**: a function ``build_model(X, y, nn_hdim, num_passes)`` that makes its weights and trains
  (``fcgrad.audits.code.build``).
- **script**: a net the file's ``if __name__ == "__main__":`` block assembles (``model.add(...)``) and trains,
  where its class cannot be built from sizes alone or holds no parameters built bare
  (``fcgrad.audits.code.script``).
The network class is ``Net`` (or ``Network``, ``NeuralNetwork``, ``Model``, ``MLP``), else the one class of
the file that has a training method. The file's folder is importable while it is audited, so it may import
a sibling module of its own. Module-level declarations, each optional: ``WEIGHTS`` and ``SAMPLES`` (its
layout, ``fcgrad.audits.code.layout``), ``ACTIVATIONS``, ``LOSS``, ``SIZES`` (the widths to build a class
that takes them), ``PARAMS`` (the functions protocol's form).

Every call into the file goes through ``fcgrad.engine.user_code.call``: an exception there becomes
one ``FcgradError`` line naming the user's file and line.
"""

import ast
import contextlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from fcgrad.audits.code import functions as code_functions
from fcgrad.audits.code import imports as code_import
from fcgrad.audits.code import params as code_params
from fcgrad.audits.code.build import build_build
from fcgrad.audits.code.layers import build_layered, find_loss
from fcgrad.audits.code.params import construct, find_slots, required
from fcgrad.audits.code.returns import build_returns
from fcgrad.audits.code.script import build_script
from fcgrad.audits.code.step import StepNet
from fcgrad.audits.code.train import FIT_NAMES, PAIRS_NAMES, STEP_NAMES, build_train_step, created_by_training
from fcgrad.engine.user_code import definition, user_error
from fcgrad.manual.errors import FcgradError

NET_NAMES = ("Net", "Network", "NeuralNetwork", "Model", "MLP")
DECLARED = ("WEIGHTS", "SAMPLES", "ACTIVATIONS", "LOSS", "SIZES", "PARAMS")
PROTOCOLS_HELP = 'README, "The protocols of audit --code"'


@contextlib.contextmanager
def user_folder(path: str):
    """The file's folder first on ``sys.path``; afterwards the path and every module loaded from it are gone."""
    folder = str(Path(path).resolve().parent)
    before = set(sys.modules)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        for name in set(sys.modules) - before:
            file = getattr(sys.modules.get(name), "__file__", None)
            if file and Path(file).resolve().parent == Path(folder):
                sys.modules.pop(name, None)


def load_module(path: str):
    """Execute the user's file as a fresh module; its own syntax or import errors name its line (a sibling
    module's error, that module's line). Loading has a time limit and leaves NumPy's global state as it was
    (``fcgrad.audits.code.imports``)."""
    file = Path(path)
    if file.suffix != ".py" or not file.is_file():
        where = "" if file.is_absolute() else f" (looked for from the working directory {os.getcwd()!r})"
        raise FcgradError(f"path: expected an existing .py file, got {path!r}{where}")
    name = f"fcgrad_user_code_{abs(hash(file.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # for dataclasses and the like inside the file
    try:
        with code_import.numpy_state_kept():
            code_import.execute(lambda: spec.loader.exec_module(module), file)
    except FcgradError:
        raise
    except Exception as exc:  # SyntaxError, ImportError, anything at the file's top level or a sibling's
        raise user_error(f"loading {file.name}", exc, str(file)) from exc
    finally:
        sys.modules.pop(name, None)
    return module


def declarations(module, path: str) -> dict[str, tuple[object, str]]:
    """``{name: (value, "path:line")}`` of the file's module-level declarations."""
    lines: dict[str, int] = {}
    with contextlib.suppress(OSError, SyntaxError, ValueError):
        for node in ast.parse(Path(path).read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for t in targets:
                if isinstance(t, ast.Name) and t.id in DECLARED:
                    lines.setdefault(t.id, node.lineno)
    return {k: (getattr(module, k), f"{path}:{lines.get(k, 1)}") for k in DECLARED if hasattr(module, k)}


def _own_classes(module) -> list[type]:
    return [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__]


def _has_training(cls) -> bool:
    return any(callable(getattr(cls, n, None)) for n in (*STEP_NAMES, *FIT_NAMES, *PAIRS_NAMES))


def net_class(module) -> type | None:
    for name in NET_NAMES:
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            return cls
    trained = [c for c in _own_classes(module) if _has_training(c)]
    return trained[0] if len(trained) == 1 else None


def _functions(module) -> list[str]:
    return [
        k
        for k, v in vars(module).items()
        if callable(v)
        and not isinstance(v, type)
        and not k.startswith("_")
        and getattr(v, "__module__", None) == module.__name__
    ]


def _methods(cls) -> str:
    """``class Net(forward, backward; from Base: fit)``: its own methods, then each base's not overridden."""
    seen: set[str] = set()
    groups = []
    for klass in cls.__mro__[:-1]:  # object's left out
        names = [k for k, v in vars(klass).items() if callable(v) and not k.startswith("__") and k not in seen]
        seen.update(names)
        if klass is cls:
            groups.append(", ".join(names))
        elif names:
            groups.append(f"from {klass.__name__}: {', '.join(names)}")
    return f"class {cls.__name__}({'; '.join(g for g in groups if g)})"


def _step_fits(module) -> bool:
    fn = getattr(module, "step", None)
    return callable(fn) and not isinstance(fn, type) and len(required(fn)) == 4


CLASSES = "classes (a net of layers with forward and backward, and a loss)"
TRAIN_STEP = "train_step (a net whose one method trains one step)"
STEP = "step (a function step(params, X, T, lr))"
FUNCTIONS = "functions (forward(params, X) and backward(params, cache, T))"


def build(module, path: str, layout, sizes: tuple[int, ...], lr: float):
    """The driver of the protocol the file follows, or one line: what was found, the closest protocol, what it lacks."""
    declared = declarations(module, path)
    cls = net_class(module)
    missing = {
        CLASSES: f"no class {', '.join(NET_NAMES)}",
        TRAIN_STEP: f"no class {', '.join(NET_NAMES)} (nor one class with a training method)",
        STEP: "no function step(params, X, T, lr) (four arguments)",
        FUNCTIONS: "no functions forward(params, X) and backward(params, cache, T)",
    }
    if cls is not None:
        try:
            net = construct(cls, sizes, lr, path)
        except FcgradError:  # a class that takes more than sizes: the net its script builds, if it builds one
            if (script := build_script(module, path, layout)) is None:
                raise
            return script, declared
        driver, missing[CLASSES] = build_layered(net, layout, path)
        if driver is not None:
            return driver, declared
        found = find_slots(net)
        if found is None and (script := build_script(module, path, layout)) is not None:
            return script, declared  # a bare net the file's `if __name__ == "__main__":` block assembles
        missing[TRAIN_STEP] = _no_parameters(net)
        found = found or created_by_training(net, layout, sizes, lr, path)
        if found is not None:
            driver, missing[TRAIN_STEP] = build_train_step(net, found[0], layout, path)
            if driver is not None:
                return driver, declared
    if _step_fits(module):
        return StepNet(module, path, layout), declared
    if code_functions.fits(module):
        return code_functions.FunctionsNet(module, path, layout, declared), declared
    if cls is not None and (returns := build_returns(net, layout, path)) is not None:
        return returns, declared
    if (made := build_build(module, path, layout, sizes)) is not None:
        return made, declared
    if (script := build_script(module, path, layout)) is not None:
        return script, declared
    raise refusal(module, path, cls, missing)


# --- the refusal of a file that fits no protocol: what was found, the closest protocol and what it lacks ---------

NO_PROTOCOL = "fits no protocol of audit --code"
SHOWN_ATTRIBUTES = 8  # of the net's attributes, named in "no parameters" (the rest counted): one line stays readable


def refusal(module, path: str, cls, missing: dict[str, str]) -> FcgradError:
    classes = _own_classes(module)
    if cls is not None and cls not in classes:  # the net class imported from a sibling module
        classes.insert(0, cls)
    found_words = [_methods(c) for c in classes] + [f"function {f}" for f in _functions(module)]
    closest = _closest(module, cls)
    return FcgradError(
        f"{(definition(cls, path) or path) if cls is not None else path}: {NO_PROTOCOL}; found "
        f"{'; '.join(found_words) or 'nothing callable'}; closest: {closest}, but {missing[closest]}; "
        f"see {PROTOCOLS_HELP}"
    )


def _closest(module, cls) -> str:
    if cls is not None:
        return TRAIN_STEP if _has_training(cls) else CLASSES
    functions = _functions(module)
    if callable(getattr(module, "step", None)) or any("step" in f.lower() for f in functions):
        return STEP
    passes = any(w in f.lower() for f in functions for w in ("forward", "backward"))
    if functions and (passes or not _own_classes(module)):
        return FUNCTIONS
    return CLASSES


def _shown(value) -> str:
    """An attribute's value in a few words: an array's shape, a list's length, a dict's keys, else its type."""
    if isinstance(value, np.ndarray):
        return f"array {value.shape}"
    if isinstance(value, (list, tuple)):
        kinds = sorted({type(v).__name__ for v in value})
        return f"{type(value).__name__} of {len(value)}" + (f" {'/'.join(kinds)}" if kinds else "")
    if isinstance(value, dict):
        keys = [str(k) for k in list(value)[:SHOWN_ATTRIBUTES]]
        return f"dict of {', '.join(keys)}{', ...' if len(value) > SHOWN_ATTRIBUTES else ''}" if value else "empty dict"
    return type(value).__name__


def _no_parameters(net) -> str:
    """Why no parameters were found: where they were looked for, and what the net holds instead."""
    attributes = [(k, v) for k, v in vars(net).items() if not k.startswith("__")] if hasattr(net, "__dict__") else []
    shown = [f"{k} ({_shown(v)})" for k, v in attributes[:SHOWN_ATTRIBUTES]]
    more = len(attributes) - len(shown)
    held = "; ".join(shown) + (f"; and {more} more" if more > 0 else "") if shown else "no attributes"
    lists = ", ".join(f"{w}/{b}" for w, b in code_params.LIST_PAIRS)
    return (
        f"no parameters: looked for layers (in net.{'/'.join(code_params.MODULE_LISTS)} or as attributes) with "
        f"arrays {'/'.join(code_params.WEIGHT_NAMES)} and {'/'.join(code_params.BIAS_NAMES)}, lists net.{lists}, "
        f"and arrays W1, b1, W2, b2, ... in a dict or as attributes; found after {type(net).__name__}(...): {held}"
    )


__all__ = ["build", "declarations", "find_loss", "load_module", "net_class", "user_folder"]
