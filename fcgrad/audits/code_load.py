"""Loading a user's network file and recognising which protocol of ``audit --code`` it follows.

The protocols (README, "The protocols of audit --code", has an example of each):
- **classes** (the blog's shape) and **store-then-update**: a network class holding layers with
  ``forward(x)`` and ``backward(residual)`` and a loss (``fcgrad.audits.code_layers``);
- **train_step**: a network class with ``train_step(X, T)``, ``fit(X, T, epochs)`` or
  ``update_mini_batch(batch, eta)`` (``fcgrad.audits.code_train``);
- **step**: a function ``step(params, X, T, lr)`` (``fcgrad.audits.code_step``);
- **functions**: ``forward(params, X)`` and ``backward(params, cache, T)`` (``fcgrad.audits.code_functions``);
- **script**: a net the file's ``if __name__ == "__main__":`` block assembles (``model.add(...)``) and trains,
  where its class cannot be built from sizes alone or holds no parameters built bare
  (``fcgrad.audits.code_script``).
The network class is ``Net`` (or ``Network``, ``NeuralNetwork``, ``Model``, ``MLP``), else the one class of
the file that has a training method. The file's folder is importable while it is audited, so it may import
a sibling module of its own. Module-level declarations, each optional: ``WEIGHTS`` and ``SAMPLES`` (its
layout, ``fcgrad.audits.code_layout``), ``ACTIVATIONS``, ``LOSS``, ``SIZES`` (the widths to build a class
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

from fcgrad.audits import code_functions
from fcgrad.audits.code_layers import build_layered, find_loss
from fcgrad.audits.code_params import construct, find_slots, required
from fcgrad.audits.code_script import build_script
from fcgrad.audits.code_step import StepNet
from fcgrad.audits.code_train import FIT_NAMES, PAIRS_NAMES, STEP_NAMES, build_train_step
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
    """Execute the user's file as a fresh module; its own syntax or import errors name its line."""
    file = Path(path)
    if file.suffix != ".py" or not file.is_file():
        where = "" if file.is_absolute() else f" (looked for from the working directory {os.getcwd()!r})"
        raise FcgradError(f"path: expected an existing .py file, got {path!r}{where}")
    name = f"fcgrad_user_code_{abs(hash(file.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # for dataclasses and the like inside the file
    state = np.random.get_state()
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # SyntaxError, ImportError, anything at the file's top level
        raise user_error(f"loading {file.name}", exc, str(file)) from exc
    finally:
        sys.modules.pop(name, None)
        np.random.set_state(state)
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
    names = [k for k, v in vars(cls).items() if callable(v) and not k.startswith("__")]
    return f"class {cls.__name__}({', '.join(names)})"


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
        missing[TRAIN_STEP] = "no parameters: layers with w and b, net.weights and net.biases, or W1, b1, ..."
        if found is not None:
            driver, missing[TRAIN_STEP] = build_train_step(net, found[0], layout, path)
            if driver is not None:
                return driver, declared
    if _step_fits(module):
        return StepNet(module, path, layout), declared
    if code_functions.fits(module):
        return code_functions.FunctionsNet(module, path, layout, declared), declared
    if (script := build_script(module, path, layout)) is not None:
        return script, declared
    found_words = [_methods(c) for c in _own_classes(module)] + [f"function {f}" for f in _functions(module)]
    closest = _closest(module, cls)
    raise FcgradError(
        f"{(definition(cls, path) or path) if cls is not None else path}: fits no protocol of audit --code; found "
        f"{'; '.join(found_words) or 'nothing callable'}; closest: {closest}, but {missing[closest]}; "
        f"see {PROTOCOLS_HELP}"
    )


def _closest(module, cls) -> str:
    if cls is not None:
        return TRAIN_STEP if _has_training(cls) else CLASSES
    if callable(getattr(module, "step", None)):
        return STEP
    if callable(getattr(module, "forward", None)) or callable(getattr(module, "backward", None)):
        return FUNCTIONS
    return CLASSES


__all__ = ["build", "declarations", "find_loss", "load_module", "net_class", "user_folder"]
