"""A detuned saw pair through a resonant lowpass, in stereo.

dgen render examples/patches/tone.py -o tone.wav --seconds 2
"""

import math

from dgen import Op


def saw(g, freq):
    return g.n(Op.phasor(g.alloc()), freq, 0.0) * 2.0 - 1.0


def build(g):
    lfo = g.n(Op.sin, g.n(Op.phasor(g.alloc()), 0.5, 0.0) * (2 * math.pi))
    cutoff = 900.0 + 600.0 * lfo
    left = g.biquad(saw(g, 110.0), cutoff, 4.0, 0.25, 0)
    right = g.biquad(saw(g, 110.7), cutoff, 4.0, 0.25, 0)
    g.output(0, left)
    g.output(1, right)
