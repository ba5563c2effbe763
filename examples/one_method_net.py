# ruff: noqa: N803  (X and T, the names the protocols use)
"""A network that trains in one method, the way most published NumPy code does, with one classic mistake.

``Net(sizes)`` holds ``weights`` (in, out) and ``biases`` (1, out); samples are rows, X (N, in). ``train_step(X, T,
lr)`` runs the forward, the backward and the update inline and returns the loss (square, ½, mean over the
samples). The hidden layers' error leaves out σ'(z): ``fcgrad audit --code examples/one_method_net.py`` names
it at its line.
"""

import numpy as np


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # never overflows


class Net:
    def __init__(self, sizes, seed=0):
        rng = np.random.default_rng(seed)
        self.weights = [rng.standard_normal((m, n)) / np.sqrt(m) for m, n in zip(sizes[:-1], sizes[1:])]
        self.biases = [np.zeros((1, n)) for n in sizes[1:]]

    def forward(self, X):
        a = X
        for w, b in zip(self.weights, self.biases):
            a = sigmoid(a @ w + b)
        return a

    def train_step(self, X, T, lr):
        activations = [X]
        for w, b in zip(self.weights, self.biases):
            activations.append(sigmoid(activations[-1] @ w + b))  # (N, out)
        y = activations[-1]
        n = X.shape[0]
        delta = (y - T) * y * (1 - y) / n  # (N, out) ∂L/∂z of the top layer
        for k in range(len(self.weights) - 1, -1, -1):
            grad_w = activations[k].T @ delta  # (in, N)·(N, out) -> (in, out)
            grad_b = delta.sum(axis=0, keepdims=True)  # (1, out)
            if k > 0:
                delta = delta @ self.weights[k].T  # MISTAKE: σ'(z) of layer k - 1 left out
            self.weights[k] = self.weights[k] - lr * grad_w
            self.biases[k] = self.biases[k] - lr * grad_b
        return 0.5 * np.sum((y - T) ** 2) / n
