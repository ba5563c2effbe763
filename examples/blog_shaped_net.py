"""A NumPy network in the blog's class shape, with two planted mistakes, for ``fcgrad audit --code``.

    fcgrad audit --code examples/blog_shaped_net.py --steps 100

A 3-5-2 network: a tanh hidden layer, a sigmoid output layer, the square loss
L = Σ (y − t)² / N / 2. Samples by column: x (in, N), w (in, out), b (out, 1), z = wᵀx + b.
Each layer's backward computes its gradients, sends the residual down with the weights the
forward used, then updates w and b with its lr. Two lines are wrong, each marked MISTAKE;
the audit finds each one at its layer and names it.
"""

import numpy as np


class SquareLoss:
    def forward(self, y, t):
        self.y, self.t = y, t
        return np.sum((y - t) ** 2) / y.shape[1] / 2

    def backward(self):
        return 2 * (self.y - self.t) / self.y.shape[1]  # (out, N)  MISTAKE: the loss's ½ forgotten


class Layer:
    """A fully connected layer; ``derivative(y)`` is the activation's f' written from its output."""

    def __init__(self, in_num, out_num, lr=0.1, seed=0):
        self.w = np.random.default_rng(seed).standard_normal((in_num, out_num)) / np.sqrt(in_num)
        self.b = np.zeros((out_num, 1))
        self.lr = lr

    def forward(self, x):
        self.x = x  # (in, N)
        self.y = self.activation(self.w.T @ x + self.b)  # (out, N)
        return self.y

    def backward(self, residual_y):
        residual_z = residual_y * self.derivative(self.y)  # (out, N)
        grad_w = self.x @ residual_z.T  # (in, N)·(N, out) -> (in, out)
        grad_b = np.sum(residual_z, axis=1, keepdims=True)  # (out, 1)
        residual_x = self.w @ residual_z  # (in, out)·(out, N) -> (in, N), before the update
        self.w = self.w - self.lr * grad_w
        self.b = self.b - self.lr * grad_b
        return residual_x


class TanhLayer(Layer):
    def activation(self, z):
        return np.tanh(z)

    def derivative(self, y):
        return 1 - y  # MISTAKE: tanh' is 1 − y²


class SigmoidLayer(Layer):
    def activation(self, z):
        return 1 / (1 + np.exp(-z))

    def derivative(self, y):
        return y * (1 - y)


class Net:
    def __init__(self, sizes=(3, 5, 2), lr=0.1):
        self.layers = [TanhLayer(sizes[0], sizes[1], lr, seed=1), SigmoidLayer(sizes[1], sizes[2], lr, seed=2)]
        self.loss = SquareLoss()

    def train_step(self, x, t):
        value = self.loss.forward(self.forward(x), t)
        residual = self.loss.backward()
        for layer in reversed(self.layers):
            residual = layer.backward(residual)
        return value

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x
