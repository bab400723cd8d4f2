"""Optimizers: plain update rules on per-instance parameter arrays."""

from __future__ import annotations

import numpy as np


class Optimizer:
    """Updates each parameter's values (one per instance) from its gradient."""

    def __init__(self, lr: float):
        if not (lr > 0 and np.isfinite(lr)):
            raise ValueError(f"learning rate must be finite and > 0, got {lr}")
        self.lr = float(lr)
        self.state: dict[str, dict] = {}

    def update(self, name: str, value: np.ndarray, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    settings = ("lr",)  # saved in checkpoints and restored from them with the state

    def state_dict(self) -> dict:
        return {
            **{k: getattr(self, k) for k in self.settings},
            "state": {k: {s: np.asarray(v).tolist() for s, v in st.items()} for k, st in self.state.items()},
        }

    def load_state_dict(self, d: dict) -> None:
        for k in self.settings:
            if k in d:
                setattr(self, k, float(d[k]))
        self.state = {k: {s: np.asarray(v, np.float64) for s, v in st.items()} for k, st in d["state"].items()}


class SGD(Optimizer):
    """value -= lr * grad (with optional momentum)."""

    settings = ("lr", "momentum")

    def __init__(self, lr: float, momentum: float = 0.0):
        super().__init__(lr)
        self.momentum = float(momentum)

    def update(self, name, value, grad):
        if self.momentum:
            st = self.state.setdefault(name, {"velocity": np.zeros_like(value)})
            st["velocity"] = self.momentum * st["velocity"] + grad
            grad = st["velocity"]
        return value - self.lr * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction."""

    settings = ("lr", "beta1", "beta2", "eps")

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def update(self, name, value, grad):
        st = self.state.setdefault(name, {"m": np.zeros_like(value), "v": np.zeros_like(value), "t": np.zeros(1)})
        st["t"] = st["t"] + 1
        t = st["t"][0]
        st["m"] = self.beta1 * st["m"] + (1 - self.beta1) * grad
        st["v"] = self.beta2 * st["v"] + (1 - self.beta2) * grad * grad
        m_hat = st["m"] / (1 - self.beta1**t)
        v_hat = st["v"] / (1 - self.beta2**t)
        return value - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
