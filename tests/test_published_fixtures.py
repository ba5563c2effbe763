"""The published-shape fixtures are what they say: each file's own gradients are those of its own loss, and each
planted mistake moves them away.

``tests/fixtures/published/`` holds one network file per way people publish backprop code, each written as its
authors would (no declarations for any tool), and ``planted.py`` three one-line mistakes per file. Every file is
imported from its folder and run on a tiny seeded problem; its gradients, taken the way the file takes them (a
returned list or dict, the arrays a backward stores, or the step a training call makes, divided by its learning
rate), are held against central finite differences of the loss the file minimises. A planted copy must still
run its own training and must miss those finite differences by far more than rounding.
"""

import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

FOLDER = Path(__file__).resolve().parent / "fixtures" / "published"

# Central differences in float64: the truncation error is about h²·|f'''| ≈ 1e-12 and the rounding error about
# eps·|f|/h ≈ 1e-10 for these losses of order 1, both far below the gradients' size (0.01 to 1): measured, the
# worst array of the nine files misses its finite differences by at most 4e-9 of the case's largest gradient entry.
FD_STEP = 1e-6
CORRECT_REL_TOL = 1e-7  # a correct file's gradients agree to this, relative to the case's largest entry
PLANTED_MIN_REL = 1e-3  # a planted mistake misses by more than this (measured: 0.02 and up), far above rounding
N_SAMPLES = 8
LR = 0.5  # every step-read gradient is (before − after)/LR: rounding of order eps·|w|/LR ≈ 1e-15
RUN_LR = 0.05  # a few steps of each file's own training, slow enough that no planted copy overflows in them


def _import(folder: Path, stem: str):
    """The module ``stem`` of ``folder``, its sibling imports resolved in that folder; sys.modules left as it was."""
    siblings = {p.stem for p in folder.glob("*.py")}
    saved = {name: sys.modules.pop(name) for name in siblings if name in sys.modules}
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(f"published_{stem}", folder / f"{stem}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
        for name in siblings:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return module


planted = _import(FOLDER, "planted")


class Case(NamedTuple):
    params: list[np.ndarray]  # the live parameter arrays the loss reads (perturbed in place)
    loss: Callable[[], float]  # the loss the file minimises, at the current params
    grads: list[np.ndarray]  # the file's own gradients at the starting params, in the order of params


def _data(n_in: int, n_out: int):
    """Seeded inputs (N, in), targets in (0, 1) (N, out), integer labels (N,) and their one-hot rows."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N_SAMPLES, n_in))
    t = rng.uniform(0.1, 0.9, (N_SAMPLES, n_out))
    labels = np.arange(N_SAMPLES) % n_out
    return x, t, labels, np.eye(n_out)[labels]


def _step_grads(before, after, lr=LR):
    return [(b - a) / lr for b, a in zip(before, after)]


# --- one tiny problem per shape: its cases (gradients against a loss) and a short run of its own training ---------


def network(folder):
    m = _import(folder, "network")
    sizes = [4, 5, 5]  # every layer after the first square: w in place of wᵀ still fits
    x, t, _, _ = _data(4, 5)
    data = [(xi.reshape(-1, 1), ti.reshape(-1, 1)) for xi, ti in zip(x, t)]
    net, stepped = m.Network(sizes), m.Network(sizes)  # the same seed: the same starting weights
    stepped.update_mini_batch(data, LR)
    grads = _step_grads([*net.weights, *net.biases], [*stepped.weights, *stepped.biases])
    loss = lambda: np.mean([0.5 * np.sum((net.feedforward(xi) - ti) ** 2) for xi, ti in data])
    run = lambda: m.Network(sizes).SGD(data, epochs=2, mini_batch_size=4, eta=RUN_LR, test_data=None)
    return [Case([*net.weights, *net.biases], loss, grads)], run


def network2(folder):
    m = _import(folder, "network2")
    sizes = [4, 5, 5]  # the output layer square: its output in place of its input still fits
    x, t, _, _ = _data(4, 5)
    data = [(xi.reshape(-1, 1), ti.reshape(-1, 1)) for xi, ti in zip(x, t)]
    lmbda = 0.3
    net, stepped = m.Network(sizes), m.Network(sizes)
    stepped.update_mini_batch(data, LR, lmbda, len(data))  # the whole set as one batch: n = len(mini_batch)
    grads = _step_grads([*net.weights, *net.biases], [*stepped.weights, *stepped.biases])
    loss = lambda: net.total_cost(data, lmbda)
    run = lambda: m.Network(sizes).SGD(data, epochs=2, mini_batch_size=4, eta=RUN_LR, lmbda=lmbda)
    return [Case([*net.weights, *net.biases], loss, grads)], run


def mlp_from_scratch(folder):
    m = _import(folder, "mlp_from_scratch")
    x, _, _, onehot = _data(4, 3)
    net = m.MultilayerPerceptron(n_hidden=5, n_iterations=0, learning_rate=LR)
    net.fit(x, onehot)  # no iteration: the starting weights
    stepped = m.MultilayerPerceptron(n_hidden=5, n_iterations=1, learning_rate=LR)
    stepped.fit(x, onehot)
    params = [net.W, net.w0, net.V, net.v0]
    grads = _step_grads(params, [stepped.W, stepped.w0, stepped.V, stepped.v0])
    loss = lambda: np.sum(m.CrossEntropy()(onehot, net.predict(x)))  # summed: the gradients carry no 1/N
    run = lambda: m.MultilayerPerceptron(n_hidden=5, n_iterations=5, learning_rate=RUN_LR).fit(x, onehot)
    return [Case(params, loss, grads)], run


def dense_framework(folder):
    m = _import(folder, "dense_framework")
    x, t, _, _ = _data(4, 4)

    def build(lr=LR):
        net = m.NeuralNetwork(optimizer=m.StochasticGradientDescent(learning_rate=lr), loss=m.SquareLoss)
        for layer in (m.Dense(4, input_shape=(4,)), m.Activation("sigmoid"), m.Dense(4), m.Activation("sigmoid")):
            net.add(layer)  # square layers: W in place of Wᵀ still fits
        return net

    net, stepped = build(), build()
    stepped.train_on_batch(x, t)
    dense, dense_stepped = net.layers[::2], stepped.layers[::2]
    params = [a for layer in dense for a in (layer.W, layer.w0)]
    grads = _step_grads(params, [a for layer in dense_stepped for a in (layer.W, layer.w0)])
    loss = lambda: np.sum(m.SquareLoss().loss(t, net.predict(x)))  # summed: the gradient −(y − ŷ) has no 1/N
    run = lambda: build(RUN_LR).fit(x, t, n_epochs=2, batch_size=4)
    return [Case(params, loss, grads)], run


def two_layer_net(folder):
    m = _import(folder, "two_layer_net")
    x, _, labels, _ = _data(4, 3)
    reg = 0.05
    net = m.TwoLayerNet(4, 5, 3, std=0.5)
    _, grads = net.loss(x, labels, reg=reg)
    keys = ["W1", "b1", "W2", "b2"]
    loss = lambda: net.loss(x, labels, reg=reg)[0]
    run = lambda: m.TwoLayerNet(4, 5, 3, std=0.5).train(x, labels, x, labels, learning_rate=RUN_LR, num_iters=4,
                                                        batch_size=4)  # fmt: skip
    return [Case([net.params[k] for k in keys], loss, [grads[k] for k in keys])], run


def dnn_app_utils(folder):
    m = _import(folder, "dnn_app_utils")
    x, _, labels, _ = _data(4, 2)
    X, Y = x.T, labels.reshape(1, -1).astype(float)  # noqa: N806  (one example per column)
    dims = [4, 5, 3, 1]
    parameters = m.initialize_parameters_deep(dims)
    AL, caches = m.L_model_forward(X, parameters)  # noqa: N806
    grads = m.L_model_backward(AL, Y, caches)
    keys = [f"{p}{layer}" for layer in range(1, len(dims)) for p in ("W", "b")]
    loss = lambda: m.compute_cost(m.L_model_forward(X, parameters)[0], Y)

    def run():
        p = m.initialize_parameters_deep(dims)
        for _ in range(3):
            out, cache = m.L_model_forward(X, p)
            p = m.update_parameters(p, m.L_model_backward(out, Y, cache), RUN_LR)

    return [Case([parameters[k] for k in keys], loss, [grads["d" + k] for k in keys])], run


def nn_from_scratch(folder):
    m = _import(folder, "nn_from_scratch")
    x, _, labels, _ = _data(4, 3)
    m.Config.nn_input_dim, m.Config.nn_output_dim, m.Config.epsilon, m.Config.reg_lambda = 4, 3, LR, 0.05
    start = m.build_model(x, labels, 5, num_passes=0)
    stepped = m.build_model(x, labels, 5, num_passes=1)
    keys = ["W1", "b1", "W2", "b2"]
    grads = _step_grads([start[k] for k in keys], [stepped[k] for k in keys])
    loss = lambda: len(x) * m.calculate_loss(start, x, labels)  # the step's loss: N times the one it reports

    def run():
        m.Config.epsilon = RUN_LR
        m.build_model(x, labels, 5, num_passes=3, print_loss=True)

    return [Case([start[k] for k in keys], loss, grads)], run


def tutorial_layers(folder):
    m = _import(folder, "tutorial_layers")
    x, t, _, _ = _data(4, 3)
    x_train, y_train = x.reshape(-1, 1, 4), t.reshape(-1, 1, 3)  # (N, 1, in): one (1, in) row per sample

    def build():
        net = m.Network()
        for layer in (m.FCLayer(4, 5), m.ActivationLayer(m.tanh, m.tanh_prime), m.FCLayer(5, 3),
                      m.ActivationLayer(m.tanh, m.tanh_prime)):  # fmt: skip
            net.add(layer)
        net.use(m.mse, m.mse_prime)
        return net

    cases = []
    for j in range(3):  # online SGD: one sample's step is the gradient of that sample's loss
        net = build()
        params = [a for layer in net.layers[::2] for a in (layer.weights, layer.bias)]
        before = [p.copy() for p in params]
        net.fit(x_train[j : j + 1], y_train[j : j + 1], epochs=1, learning_rate=LR)  # updates in place
        grads = _step_grads(before, params)
        for p, b in zip(params, before):
            p[...] = b
        loss = lambda net=net, j=j: m.mse(y_train[j], net.predict(x_train[j : j + 1])[0])
        cases.append(Case(params, loss, grads))
    run = lambda: build().fit(x_train, y_train, epochs=2, learning_rate=RUN_LR)
    return cases, run


def nnfs_model(folder):
    m = _import(folder, "nnfs_model")
    x, _, labels, _ = _data(4, 4)

    def build(lr=LR):
        model = m.Model()
        model.add(m.Layer_Dense(4, 4, weight_regularizer_l2=0.01, bias_regularizer_l2=0.01))
        model.add(m.Activation_ReLU())
        model.add(m.Layer_Dense(4, 4))  # square layers: the output in place of the input, w in place of wᵀ fit
        model.add(m.Activation_Softmax())
        model.set(loss=m.Loss_CategoricalCrossentropy(), optimizer=m.Optimizer_SGD(learning_rate=lr),
                  accuracy=m.Accuracy_Categorical())  # fmt: skip
        model.finalize()
        rng = np.random.default_rng(3)  # weights of order 1 and biases off zero: every path carries a gradient
        for layer in model.trainable_layers:
            layer.weights[...] = 0.7 * rng.standard_normal(layer.weights.shape)
            layer.biases[...] = 0.1 * rng.standard_normal(layer.biases.shape)
        return model

    model = build()
    params = [a for layer in model.trainable_layers for a in (layer.weights, layer.biases)]
    before = [p.copy() for p in params]
    model.train(x, labels, epochs=1, print_every=1)  # the optimizer steps the arrays in place
    grads = _step_grads(before, params)
    for p, b in zip(params, before):
        p[...] = b

    def loss():
        output = model.forward(x, training=False)
        return sum(model.loss.calculate(output, labels, include_regularization=True))

    run = lambda: build(RUN_LR).train(x, labels, epochs=3, print_every=1)
    return [Case(params, loss, grads)], run


PROBLEMS = [network, network2, mlp_from_scratch, dense_framework, two_layer_net, dnn_app_utils, nn_from_scratch]
PROBLEMS += [tutorial_layers, nnfs_model]
SHAPES = {problem.__name__: problem for problem in PROBLEMS}  # the shape's name is its main file's stem


# --- the comparison ----------------------------------------------------------------------------------------------


def finite_differences(case: Case) -> list[np.ndarray]:
    out = []
    for p in case.params:
        g = np.zeros(p.shape)
        for i in np.ndindex(p.shape):
            keep = p[i]
            p[i] = keep + FD_STEP
            up = case.loss()
            p[i] = keep - FD_STEP
            down = case.loss()
            p[i] = keep
            g[i] = (up - down) / (2 * FD_STEP)
        out.append(g)
    return out


def worst_miss(case: Case) -> float:
    """The largest |file's gradient − finite differences| over every array, relative to the case's largest
    finite-difference entry; infinite where a gradient does not even have its parameter's shape."""
    fd = finite_differences(case)
    scale = max(np.max(np.abs(g)) for g in fd)
    if any(np.shape(g) != f.shape for g, f in zip(case.grads, fd)):
        return np.inf
    return max(np.max(np.abs(g - f)) for g, f in zip(case.grads, fd)) / scale


def _planted_folder(tmp_path: Path, mistake) -> Path:
    for source in FOLDER.glob("*.py"):
        shutil.copy(source, tmp_path / source.name)
    target = tmp_path / mistake.file
    target.write_text(planted.plant(target.read_text(encoding="utf-8"), mistake), encoding="utf-8")
    return tmp_path


# --- the tests ----------------------------------------------------------------------------------------------------


def test_every_main_file_has_a_problem_and_three_mistakes():
    assert set(SHAPES) == set(planted.PLANTED)
    assert all((FOLDER / f"{shape}.py").is_file() for shape in SHAPES)
    assert all(len(mistakes) == 3 for mistakes in planted.PLANTED.values())


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_correct_file_gets_the_gradient_of_its_own_loss(shape):
    cases, run = SHAPES[shape](FOLDER)
    for case in cases:
        assert worst_miss(case) < CORRECT_REL_TOL
    run()  # its own training runs too


NAMES = {
    "sigma_prime_of_upstream", "activation_derivative_missing", "derivative_at_y", "derivative_form_at_z",
    "residual_through_w_transposed", "wrong_n", "grad_w_from_output", "bias_summed_over_wrong_axis", "update_sign",
    "grad_w_times_w",
}  # fmt: skip


def test_the_mistakes_are_three_different_ones_per_file_and_cover_every_name():
    for shape, mistakes in planted.PLANTED.items():
        assert len({m.name for m in mistakes}) == 3, shape
    assert {m.name for mistakes in planted.PLANTED.values() for m in mistakes} == NAMES


MISTAKES = [(shape, mistake) for shape, mistakes in planted.PLANTED.items() for mistake in mistakes]


@pytest.mark.parametrize("shape, mistake", MISTAKES, ids=[f"{s}-{m.name}" for s, m in MISTAKES])
def test_a_planted_mistake_runs_and_misses_the_gradient(shape, mistake, tmp_path):
    folder = _planted_folder(tmp_path, mistake)
    assert (folder / mistake.file).read_text(encoding="utf-8") != (FOLDER / mistake.file).read_text(encoding="utf-8")
    cases, run = SHAPES[shape](folder)
    run()  # the planted copy still trains without an exception
    assert max(worst_miss(case) for case in cases) > PLANTED_MIN_REL
