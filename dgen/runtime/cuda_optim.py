"""The optimizer step of `TrainingContext.train` on the GPU as one kernel (cuda_train.py).

Per step and element (parameter k, instance b) the kernel reads the gradient row out of the
backward memory, applies the optimizer's rule (`dgen.Adam` or `dgen.SGD`, the same float64
arithmetic as their NumPy `update`, contraction into FMAs off), clamps to the bounds and
writes the float32 value into the row the next step's memory is copied from. The per-element
CuPy operations this replaces were some forty small kernels per step: at B = 1024 several
times the arithmetic's cost. The optimizer's state stays in (P, B) device arrays during the
loop and is written back into `optimizer.state` (NumPy) at the end, as the rules left it.
"""

from __future__ import annotations

_COMMON_IN = "raw float32 bmem, raw int64 grad_rows, raw bool has_grad, float64 low, float64 high, int64 B"
_COMMON_OUT = "float64 value, float64 grad, raw float32 start_mem, raw int64 mem_rows"
_READ_GRAD = """
const long long k = i / B, b = i % B;
const double g = has_grad[k] ? (double)bmem[grad_rows[k] * B + b] : 0.0;
grad = g;
"""
_WRITE_VALUE = """
x = x < low ? low : (x > high ? high : x);  /* as clip: NaN stays NaN */
value = x;
start_mem[mem_rows[k] * B + b] = (float)x;
"""
RULES = {  # optimizer class name -> (its state keys, the update of x from g); its `settings`
    # (lr, beta1, ...) are the kernel's scalar inputs of the same names
    "Adam": (
        ("m", "v", "t"),
        """
t = t + 1.0;
m = beta1 * m + (1.0 - beta1) * g;
v = beta2 * v + (1.0 - beta2) * g * g;
const double m_hat = m / (1.0 - pow(beta1, t)), v_hat = v / (1.0 - pow(beta2, t));
double x = value - lr * m_hat / (sqrt(v_hat) + eps);
""",
    ),
    "SGD": (
        ("velocity",),
        """
double step = g;
if (momentum != 0.0) { velocity = momentum * velocity + g; step = velocity; }
double x = value - lr * step;
""",
    ),
}
_KERNELS = {}


def _kernel(cp, name, settings):
    if name not in _KERNELS:
        keys, body = RULES[name]
        state = ", ".join(f"float64 {key}" for key in keys)
        extra = ", ".join(f"float64 {s}" for s in settings)
        _KERNELS[name] = cp.ElementwiseKernel(
            f"{_COMMON_IN}, {extra}",
            f"{_COMMON_OUT}, {state}",
            _READ_GRAD + body + _WRITE_VALUE,
            f"dgen_{name.lower()}_step",
            options=("--fmad=false",),
        )
    return _KERNELS[name]


class DeviceOptimizer:
    """`optimizer`'s rule over all parameters of a fused run at once. dev: cuda_train's
    _DeviceState (values, bounds, gradient and memory rows as device arrays)."""

    def __init__(self, cp, optimizer, dev, instances):
        self.cp, self.opt, self.dev = cp, optimizer, dev
        self.name = type(optimizer).__name__
        self.keys = RULES[self.name][0]
        self.kernel = _kernel(cp, self.name, optimizer.settings)
        self.settings = tuple(getattr(optimizer, s) for s in optimizer.settings)
        self.state = {key: cp.zeros((len(dev.params), instances), cp.float64) for key in self.keys}
        for k, p in enumerate(dev.params):
            for key, held in optimizer.state.get(p.name, {}).items():
                if key in self.state:
                    self.state[key][k] = cp.asarray(held, cp.float64)  # "t" (1,) fills the row
        self.keeps_state = not (self.name == "SGD" and not optimizer.momentum)  # as the rules do

    def __call__(self, bmem, grads, start_mem):
        """One step: gradients into `grads` (P, B), new values into dev.values and start_mem."""
        dev, B = self.dev, bmem.shape[1]
        self.kernel(
            bmem, dev.grad_rows, dev.has_grad, dev.low, dev.high, B, *self.settings,
            dev.values, grads, start_mem, dev.mem_rows, *(self.state[key] for key in self.keys),
        )  # fmt: skip

    def write_back(self):
        """The state into optimizer.state as NumPy arrays, in the shapes the rules make."""
        if not self.keeps_state:
            return
        for k, p in enumerate(self.dev.params):
            held = {key: self.state[key][k].get() for key in self.keys}
            if "t" in held:
                held["t"] = held["t"][:1]
            self.opt.state[p.name] = held
