"""A saw through a lowpass with a learnable cutoff (for `dgen train`).

dgen render examples/patches/lowpass_saw.py -o saw.wav --seconds 1
dgen train examples/patches/lowpass_saw.py --target target.wav --lr 20 --steps 100
"""

import dgen
from dgen import Op

CUTOFF = 800.0  # the starting value; `dgen train` fits it


def build(g):
    cutoff = dgen.Parameter(g, CUTOFF, name="cutoff", min=50.0, max=15000.0)
    saw = g.n(Op.phasor(g.alloc()), 110.0, 0.0) * 2.0 - 1.0
    return g.biquad(saw, cutoff.node(), 0.707, 0.5, 0)
