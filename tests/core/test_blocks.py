"""DSP building blocks and losses (spec/ops.md: DSP building blocks, Losses).

Expectations: scipy.signal.lfilter, RBJ coefficients computed here from the ops.md formulas,
plain per-sample loops of the ops.md formulas, numpy.fft.rfft.
"""

import math

import numpy as np
import pytest
import scipy.signal

import dgen
from dgen import Op

RTOL = 1e-9
ATOL = 1e-12
SR = 44100


def compile_ref(g, frame_count):
    return dgen.compile(g, backend="reference", frame_count=frame_count)


def run_prog(prog, inputs=None, frames=None):
    if inputs is not None:
        inputs = np.ascontiguousarray(inputs, dtype=np.float64)
        frames = inputs.shape[-1]
    out = np.asarray(prog.run(inputs=inputs, frames=frames))
    assert out.ndim == 2 and out.shape[1] == frames, out.shape
    return out


def run_graph(g, inputs=None, frames=None):
    if inputs is not None:
        frames = np.asarray(inputs).shape[-1]
    return run_prog(compile_ref(g, frames), inputs, frames)


def assert_close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def past(x, m):
    """x[m] with the spec convention x[m] = 0 for m < 0."""
    return x[m] if m >= 0 else 0.0


# ---------------------------------------------------------------------------------------------
# sos
# ---------------------------------------------------------------------------------------------
def random_stable_sos(rng):
    r = rng.uniform(0.1, 0.97)
    theta = rng.uniform(0.0, math.pi)
    a1, a2 = -2.0 * r * math.cos(theta), r * r
    b0, b1, b2 = rng.normal(size=3)
    return b0, b1, b2, a1, a2


@pytest.mark.parametrize("seed", range(6))
def test_sos_matches_lfilter(seed):
    rng = np.random.default_rng(100 + seed)
    b0, b1, b2, a1, a2 = random_stable_sos(rng)
    x = rng.normal(size=2048)
    g = dgen.Graph()
    g.n(Op.output(0), g.sos(g.n(Op.input(0)), b0, b1, b2, a1, a2))
    y = run_graph(g, x[None, :])[0]
    assert_close(y, scipy.signal.lfilter([b0, b1, b2], [1.0, a1, a2], x), atol=1e-10)


def test_sos_impulse_response_real_poles():
    # a1, a2 from two real poles 0.5 and -0.25; b = [1, 0, 0]
    a1, a2 = -(0.5 - 0.25), 0.5 * -0.25
    x = np.zeros(64)
    x[0] = 1.0
    g = dgen.Graph()
    g.n(Op.output(0), g.sos(g.n(Op.input(0)), 1.0, 0.0, 0.0, a1, a2))
    y = run_graph(g, x[None, :])[0]
    n = np.arange(64)
    # partial fractions: h[n] = (0.5^(n+1) - (-0.25)^(n+1)) / (0.5 + 0.25)
    assert_close(y, (0.5 ** (n + 1) - (-0.25) ** (n + 1)) / 0.75)


def sos_loop(x, b0, b1, b2, a1, a2):
    """spec: y[n] = b0 x[n] + b1 x[n-1] + b2 x[n-2] - a1 y[n-1] - a2 y[n-2] (per-frame coefs)."""
    y = np.zeros(len(x))
    for n in range(len(x)):
        y[n] = (
            b0[n] * x[n]
            + b1[n] * past(x, n - 1)
            + b2[n] * past(x, n - 2)
            - a1[n] * past(y, n - 1)
            - a2[n] * past(y, n - 2)
        )
    return y


def test_sos_time_varying_coefficients():
    N = 1500
    rng = np.random.default_rng(110)
    x = rng.normal(size=N)
    t = np.arange(N) / N
    r = 0.5 + 0.4 * t
    theta = 0.2 + 2.0 * t
    a1, a2 = -2 * r * np.cos(theta), r * r
    b0 = 1.0 + 0.5 * np.sin(7 * t)
    b1 = np.cos(3 * t)
    b2 = rng.uniform(-1.0, 1.0, N)
    g = dgen.Graph()
    ins = [g.n(Op.input(i)) for i in range(6)]
    g.n(Op.output(0), g.sos(*ins))
    y = run_graph(g, np.stack([x, b0, b1, b2, a1, a2]))[0]
    assert_close(y, sos_loop(x, b0, b1, b2, a1, a2), atol=1e-10)


# ---------------------------------------------------------------------------------------------
# biquad
# ---------------------------------------------------------------------------------------------
def rbj_coefficients(cutoff, resonance, gain, mode, sr=SR):
    """ops.md: w = 2*pi*|cutoff|/sr, alpha = sin(w)/(2*|resonance|), a0 = 1 + alpha, c = cos(w);
    b from the mode table (chosen as selector(mode + 1, ...)); b_i *= gain/a0,
    a1 = -2c/a0, a2 = (1 - alpha)/a0."""
    w = 2.0 * math.pi * abs(cutoff) / sr
    alpha = math.sin(w) / (2.0 * abs(resonance))
    a0 = 1.0 + alpha
    c = math.cos(w)
    table = [
        ((1 - c) / 2, 1 - c, (1 - c) / 2),  # 0 lowpass
        ((1 + c) / 2, -(1 + c), (1 + c) / 2),  # 1 highpass
        (alpha, 0.0, -alpha),  # 2 bandpass, 0 dB peak
        (math.sin(w) / 2, 0.0, -math.sin(w) / 2),  # 3 bandpass, constant skirt
        (1.0, -2 * c, 1.0),  # 4 notch
        (1 - alpha, -2 * c, 1 + alpha),  # 5 allpass
    ]
    # selector(index = mode + 1): 0 if index <= 0; o_i for smallest i >= index; 0 if index > 6
    index = mode + 1
    if index <= 0 or index > len(table):
        b = (0.0, 0.0, 0.0)
    else:
        b = table[int(math.ceil(index)) - 1]
    b = [bi * gain / a0 for bi in b]
    return b[0], b[1], b[2], -2 * c / a0, (1 - alpha) / a0


def biquad_graph(cutoff, resonance, gain, mode, sr=SR):
    g = dgen.Graph(sample_rate=sr)
    g.n(Op.output(0), g.biquad(g.n(Op.input(0)), cutoff, resonance, gain, mode))
    return g


@pytest.mark.parametrize("mode", range(6))
@pytest.mark.parametrize(
    "cutoff,resonance,gain",
    [
        (1500.0, 1 / math.sqrt(2), 1.0),
        (200.0, 0.5, 0.8),
        (9000.0, 4.0, 1.7),
    ],
)
def test_biquad_modes_match_rbj_lfilter(mode, cutoff, resonance, gain):
    rng = np.random.default_rng(120 + mode)
    x = rng.normal(size=1024)
    y = run_graph(biquad_graph(cutoff, resonance, gain, float(mode)), x[None, :])[0]
    b0, b1, b2, a1, a2 = rbj_coefficients(cutoff, resonance, gain, mode)
    assert_close(y, scipy.signal.lfilter([b0, b1, b2], [1.0, a1, a2], x), atol=1e-10)


def test_biquad_uses_absolute_cutoff_and_resonance():
    # spec: "w = 2*pi*|cutoff|/sr, alpha = sin(w) / (2*|resonance|)"
    rng = np.random.default_rng(130)
    x = rng.normal(size=1024)
    y_neg = run_graph(biquad_graph(-2000.0, -2.0, 1.0, 0.0), x[None, :])[0]
    b0, b1, b2, a1, a2 = rbj_coefficients(2000.0, 2.0, 1.0, 0)
    assert_close(y_neg, scipy.signal.lfilter([b0, b1, b2], [1.0, a1, a2], x), atol=1e-10)


@pytest.mark.parametrize("mode", [-0.5, 0.5, 2.25, 4.9999, -1.0, -3.0, 5.5, 6.0, 10.0])
def test_biquad_non_integer_and_out_of_range_mode(mode):
    # spec: "mode selects (as selector(mode + 1, ...))": -0.5 -> index 0.5 -> lowpass,
    # 0.5 -> index 1.5 -> highpass, ... ; index <= 0 or > 6 gives b = 0, so the output is 0.
    rng = np.random.default_rng(131)
    x = rng.normal(size=512)
    y = run_graph(biquad_graph(1000.0, 1.0, 1.0, mode), x[None, :])[0]
    b0, b1, b2, a1, a2 = rbj_coefficients(1000.0, 1.0, 1.0, mode)
    assert_close(y, scipy.signal.lfilter([b0, b1, b2], [1.0, a1, a2], x), atol=1e-10)
    if mode + 1 <= 0 or mode + 1 > 6:
        assert np.all(y == 0.0)


def test_biquad_time_varying_cutoff_and_mode():
    N = 1024
    rng = np.random.default_rng(132)
    x = rng.normal(size=N)
    cutoff = np.geomspace(100.0, 12000.0, N)
    res = 0.5 + 3.0 * rng.uniform(size=N)
    gain = np.linspace(0.5, 1.5, N)
    mode = np.repeat(np.arange(6, dtype=float), -(-N // 6))[:N]
    g = dgen.Graph(sample_rate=SR)
    ins = [g.n(Op.input(i)) for i in range(5)]
    g.n(Op.output(0), g.biquad(*ins))
    y = run_graph(g, np.stack([x, cutoff, res, gain, mode]))[0]
    coefs = np.array([rbj_coefficients(cutoff[n], res[n], gain[n], mode[n]) for n in range(N)]).T
    assert_close(y, sos_loop(x, *coefs), atol=1e-10)


def test_biquad_lowpass_is_minus_3db_at_cutoff():
    # Butterworth Q: |H| at the cutoff is 1/sqrt(2) (-3.01 dB). Cutoff = sr/40 so one period is
    # exactly 40 samples; measure the RMS of whole periods in steady state.
    sr, N = SR, 4096
    f = sr / 40.0
    n = np.arange(N)
    x = np.sin(2 * np.pi * f * n / sr)
    y = run_graph(biquad_graph(f, 1 / math.sqrt(2), 1.0, 0.0, sr=sr), x[None, :])[0]
    tail = y[N - 40 * 50 :]
    amp = math.sqrt(2.0) * math.sqrt(np.mean(tail**2))
    gain_db = 20.0 * math.log10(amp)
    assert abs(gain_db - 20.0 * math.log10(1.0 / math.sqrt(2.0))) < 0.1
    assert abs(gain_db + 3.01) < 0.1


def test_biquad_lowpass_passes_dc_and_highpass_blocks_it():
    x = np.ones(4096)
    lp = run_graph(biquad_graph(500.0, 0.707, 1.0, 0.0), x[None, :])[0]
    hp = run_graph(biquad_graph(500.0, 0.707, 1.0, 1.0), x[None, :])[0]
    assert abs(lp[-1] - 1.0) < 1e-6
    assert abs(hp[-1]) < 1e-6


# ---------------------------------------------------------------------------------------------
# delay
# ---------------------------------------------------------------------------------------------
def delay_loop(x, d, max_delay):
    """spec: y[n] = x(n - d), linear interpolation between the two neighbouring samples,
    d clamped to [0, max_delay]; d = 2.25 gives 0.75*x[n-2] + 0.25*x[n-3]."""
    y = np.zeros(len(x))
    for n in range(len(x)):
        dn = min(max(d[n], 0.0), max_delay)
        i = int(math.floor(dn))
        f = dn - i
        y[n] = (1.0 - f) * past(x, n - i) + f * past(x, n - i - 1)
    return y


def delay_graph(d, max_delay=None, sr=SR, d_from_input=False):
    g = dgen.Graph(sample_rate=sr)
    x = g.n(Op.input(0))
    dd = g.n(Op.input(1)) if d_from_input else d
    if max_delay is None:
        y = g.delay(x, dd)
    else:
        y = g.delay(x, dd, max_delay=max_delay)
    g.n(Op.output(0), y)
    return g


@pytest.mark.parametrize("d", [0, 1, 7, 100])
def test_delay_integer(d):
    rng = np.random.default_rng(140)
    x = rng.normal(size=512)
    y = run_graph(delay_graph(float(d)), x[None, :])[0]
    expected = np.concatenate([np.zeros(d), x[: len(x) - d]])
    assert_close(y, expected)


def test_delay_fractional_2_25():
    rng = np.random.default_rng(141)
    x = rng.normal(size=512)
    y = run_graph(delay_graph(2.25), x[None, :])[0]
    xp = np.concatenate([np.zeros(3), x])  # xp[k + 3] = x[k]
    n = np.arange(512)
    expected = 0.75 * xp[n + 3 - 2] + 0.25 * xp[n + 3 - 3]
    assert_close(y, expected)
    assert y[0] == 0.0 and y[1] == 0.0
    assert y[2] == pytest.approx(0.75 * x[0], rel=1e-12)
    assert y[3] == pytest.approx(0.75 * x[1] + 0.25 * x[0], rel=1e-12)


@pytest.mark.parametrize("d", [0.5, 0.25, 1.5, 13.875])
def test_delay_fractional_other(d):
    rng = np.random.default_rng(142)
    x = rng.normal(size=512)
    y = run_graph(delay_graph(d), x[None, :])[0]
    assert_close(y, delay_loop(x, np.full(512, d), 2 * SR))


def test_delay_as_node_constant():
    rng = np.random.default_rng(143)
    x = rng.normal(size=256)
    g = dgen.Graph()
    g.n(Op.output(0), g.delay(g.n(Op.input(0)), g.n(Op.constant(3.5)), max_delay=16))
    y = run_graph(g, x[None, :])[0]
    assert_close(y, delay_loop(x, np.full(256, 3.5), 16))


def test_delay_time_varying():
    N = 2048
    rng = np.random.default_rng(144)
    x = rng.normal(size=N)
    n = np.arange(N)
    d = 20.0 + 15.0 * np.sin(2 * np.pi * n / 500.0) + rng.uniform(-0.5, 0.5, N)
    y = run_graph(delay_graph(None, max_delay=64, d_from_input=True), np.stack([x, d]))[0]
    assert_close(y, delay_loop(x, d, 64))


def test_delay_clamped_to_range():
    N = 1024
    rng = np.random.default_rng(145)
    x = rng.normal(size=N)
    d = rng.uniform(-10.0, 30.0, N)
    d[:5] = [-1.0, 16.0, 16.5, 1e9, -1e9]
    y = run_graph(delay_graph(None, max_delay=16, d_from_input=True), np.stack([x, d]))[0]
    assert_close(y, delay_loop(x, d, 16))
    # constant out-of-range delays
    y = run_graph(delay_graph(25.0, max_delay=10), x[None, :])[0]
    assert_close(y, np.concatenate([np.zeros(10), x[:-10]]))
    y = run_graph(delay_graph(-3.0, max_delay=10), x[None, :])[0]
    assert_close(y, x)


def test_delay_default_max_is_two_seconds():
    # spec: "max_delay defaults to 2*sr samples" -- with sr = 100 that is 200 samples
    N = 1024
    rng = np.random.default_rng(146)
    x = rng.normal(size=N)
    y = run_graph(delay_graph(500.0, sr=100), x[None, :])[0]
    assert_close(y, np.concatenate([np.zeros(200), x[:-200]]))
    y = run_graph(delay_graph(150.5, sr=100), x[None, :])[0]
    assert_close(y, delay_loop(x, np.full(N, 150.5), 200))


def test_delay_streaming():
    N = 1024
    rng = np.random.default_rng(147)
    x = rng.normal(size=N)
    d = rng.uniform(0.0, 40.0, N)
    ins = np.stack([x, d])
    prog = compile_ref(delay_graph(None, max_delay=48, d_from_input=True), N)
    parts = [run_prog(prog, ins[:, :300]), run_prog(prog, ins[:, 300:301]), run_prog(prog, ins[:, 301:])]
    assert_close(np.concatenate(parts, axis=1)[0], delay_loop(x, d, 48))


# ---------------------------------------------------------------------------------------------
# compressor
# ---------------------------------------------------------------------------------------------
def db(v):
    # spec: db(v) = 20*log10(max(|v|, 1e-5))
    return 20.0 * math.log10(max(abs(v), 1e-5))


def sign(v):
    return float(v > 0) - float(v < 0)


def compressor_loop(x, ratio, threshold, knee, attack, release, sc_on, sc, sr):
    """Per-sample loop of the ops.md compressor formula (parameters may be per-frame arrays)."""
    N = len(x)
    p_ = [
        np.broadcast_to(np.asarray(v, dtype=float), (N,)) for v in (ratio, threshold, knee, attack, release, sc_on, sc)
    ]
    ratio, threshold, knee, attack, release, sc_on, sc = p_
    g = 0.0
    y = np.empty(N)
    for n in range(N):
        det = db(sc[n] if sc_on[n] > 0 else x[n])
        ks = threshold[n] - knee[n] / 2
        ke = threshold[n] + knee[n] / 2
        if det <= ks:
            gr = 0.0
        elif det >= ke:
            gr = (det - threshold[n]) * (1 - 1 / ratio[n])
        else:
            p = (det - ks) / knee[n]
            r = 1 + p * (ratio[n] - 1)
            gr = (det - (ks + p * (threshold[n] - ks))) * (1 - 1 / r)
        ca = math.exp(math.log(0.01) / (attack[n] * sr))
        cr = math.exp(math.log(0.01) / (release[n] * sr))
        if gr > g:
            g = ca * g + (1 - ca) * gr
        else:
            g = cr * g + (1 - cr) * gr
        # ops.md lists the smoothing update before the output formula; we take the output to
        # use the state updated in this frame ("g := ...", then "y = sign(x)*10^((db(x)-g)/20)").
        y[n] = sign(x[n]) * 10.0 ** ((db(x[n]) - g) / 20.0)
    return y


def make_signal(N, seed, lo_db=-50.0, hi_db=0.0, f=997.0):
    rng = np.random.default_rng(seed)
    n = np.arange(N)
    env_db = lo_db + (hi_db - lo_db) * 0.5 * (1 - np.cos(2 * np.pi * n / N * 2))
    env_db += rng.uniform(-3.0, 3.0, N)
    return 10 ** (env_db / 20) * np.sin(2 * np.pi * f * n / SR)


def compressor_graph(ratio, threshold, knee, attack, release, sc_on, use_sc_input=True):
    g = dgen.Graph(sample_rate=SR)
    x = g.n(Op.input(0))
    sc = g.n(Op.input(1)) if use_sc_input else 0.0
    y = g.compressor(x, ratio, threshold, knee, attack, release, sc_on, sc)
    g.n(Op.output(0), y)
    return g


@pytest.mark.parametrize("knee", [0.0, 6.0, 12.0, 30.0])
@pytest.mark.parametrize("ratio,threshold", [(4.0, -20.0), (10.0, -30.0), (1.5, -12.0)])
def test_compressor_matches_formula(knee, ratio, threshold):
    N = 2000
    x = make_signal(N, 150)
    sc = make_signal(N, 151, f=150.0)  # present but ignored: sidechain_on = 0
    attack, release = 0.002, 0.02
    y = run_graph(compressor_graph(ratio, threshold, knee, attack, release, 0.0), np.stack([x, sc]))[0]
    expected = compressor_loop(x, ratio, threshold, knee, attack, release, 0.0, sc, SR)
    assert_close(y, expected, atol=1e-10)
    # the test signal does exercise the regions of the gain computer
    det = np.array([db(v) for v in x])
    assert np.sum(det > threshold) > 50
    if threshold + knee / 2 <= -6.0:
        assert np.sum(det >= threshold + knee / 2) > 50
    if knee > 0:
        assert np.sum((det > threshold - knee / 2) & (det < threshold + knee / 2)) > 50
    assert np.max(np.abs(y - x)) > 1e-3  # it compressed something


@pytest.mark.parametrize("knee", [0.0, 10.0])
def test_compressor_sidechain_on(knee):
    N = 3000
    x = make_signal(N, 152, lo_db=-30.0, hi_db=-10.0)
    sc = make_signal(N, 153, lo_db=-60.0, hi_db=0.0, f=220.0)
    y = run_graph(compressor_graph(4.0, -24.0, knee, 0.001, 0.05, 1.0), np.stack([x, sc]))[0]
    expected = compressor_loop(x, 4.0, -24.0, knee, 0.001, 0.05, 1.0, sc, SR)
    assert_close(y, expected, atol=1e-10)
    not_sc = compressor_loop(x, 4.0, -24.0, knee, 0.001, 0.05, 0.0, sc, SR)
    assert np.max(np.abs(expected - not_sc)) > 1e-3  # the sidechain matters in this test


def test_compressor_sidechain_switch_per_frame_and_inputs():
    N = 2000
    x = make_signal(N, 154)
    sc = make_signal(N, 155, f=80.0)
    n = np.arange(N)
    sc_on = np.where((n // 250) % 2 == 1, 1.0, np.where(n % 3 == 0, -1.0, 0.0))
    ratio = np.linspace(2.0, 8.0, N)
    thr = np.linspace(-30.0, -15.0, N)
    knee = np.linspace(0.0, 20.0, N)
    attack = np.full(N, 0.003)
    release = np.linspace(0.01, 0.1, N)
    g = dgen.Graph(sample_rate=SR)
    ins = [g.n(Op.input(i)) for i in range(8)]
    x_, r_, t_, k_, a_, rel_, on_, sc_ = ins
    g.n(Op.output(0), g.compressor(x_, r_, t_, k_, a_, rel_, on_, sc_))
    y = run_graph(g, np.stack([x, ratio, thr, knee, attack, release, sc_on, sc]))[0]
    expected = compressor_loop(x, ratio, thr, knee, attack, release, sc_on, sc, SR)
    assert_close(y, expected, atol=1e-10)


def test_compressor_below_threshold_is_identity():
    N = 1000
    x = make_signal(N, 156, lo_db=-60.0, hi_db=-40.0)
    x[0] = 0.0
    y = run_graph(compressor_graph(4.0, -10.0, 6.0, 0.01, 0.1, 0.0), np.stack([x, x]))[0]
    big = np.abs(x) >= 1e-5
    assert_close(y[big], x[big])
    assert y[0] == 0.0  # sign(0) = 0


def test_compressor_tiny_input_literal_db_floor():
    # spec: "db(v) = 20*log10(max(|v|, 1e-5))" and "y = sign(x) * 10^((db(x) - g)/20)":
    # with no gain reduction an input smaller than 1e-5 comes out with magnitude 1e-5.
    x = np.array([0.0, 1e-7, -1e-7, 1e-5, -3e-6, 0.5, 0.0])
    y = run_graph(compressor_graph(4.0, 0.0, 0.0, 0.01, 0.1, 0.0), np.stack([x, x]))[0]
    assert_close(y, [0.0, 1e-5, -1e-5, 1e-5, -1e-5, 0.5, 0.0])


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------
def spectral_loss_expected(a, b, W):
    """spec: A_k over the W samples ending at frame n (zeros before 0), rectangular window;
    value = sum_{k=0}^{W/2} (|A_k| - |B_k|)^2."""
    pad = np.zeros(W - 1)
    wa = np.lib.stride_tricks.sliding_window_view(np.concatenate([pad, a]), W)
    wb = np.lib.stride_tricks.sliding_window_view(np.concatenate([pad, b]), W)
    A = np.abs(np.fft.rfft(wa, axis=1))
    B = np.abs(np.fft.rfft(wb, axis=1))
    assert A.shape == (len(a), W // 2 + 1)
    return np.sum((A - B) ** 2, axis=1)


def spectral_loss_dft_loop(a, b, W, n):
    """The ops.md sum written out for one frame n (cross-checks the rfft expectation)."""
    total = 0.0
    for k in range(W // 2 + 1):
        A = sum(past(a, n - W + 1 + m) * np.exp(-2j * np.pi * k * m / W) for m in range(W))
        B = sum(past(b, n - W + 1 + m) * np.exp(-2j * np.pi * k * m / W) for m in range(W))
        total += (abs(A) - abs(B)) ** 2
    return total


def spectral_graph(W):
    g = dgen.Graph()
    g.n(Op.output(0), g.spectral_loss(g.n(Op.input(0)), g.n(Op.input(1)), window_size=W))
    return g


@pytest.mark.parametrize("W", [4, 16, 64])
def test_spectral_loss_matches_rfft(W):
    N = 512
    rng = np.random.default_rng(160 + W)
    a = rng.normal(size=N)
    b = 0.5 * a + rng.normal(size=N)
    y = run_graph(spectral_graph(W), np.stack([a, b]))[0]
    expected = spectral_loss_expected(a, b, W)
    for n in (0, 1, W - 2, W - 1, W, 300):
        assert expected[n] == pytest.approx(spectral_loss_dft_loop(a, b, W, n), rel=1e-9)
    assert_close(y, expected, rtol=1e-9, atol=1e-9)


def test_spectral_loss_identical_signals_is_zero_and_shift_invariant_magnitudes():
    N = 256
    rng = np.random.default_rng(170)
    a = rng.normal(size=N)
    y = run_graph(spectral_graph(16), np.stack([a, a]))[0]
    assert_close(y, np.zeros(N), atol=1e-9)
    # -a has the same magnitudes: loss 0
    y = run_graph(spectral_graph(16), np.stack([a, -a]))[0]
    assert_close(y, np.zeros(N), atol=1e-9)


def test_spectral_loss_streaming():
    N, W = 300, 64
    rng = np.random.default_rng(171)
    ab = rng.normal(size=(2, N))
    prog = compile_ref(spectral_graph(W), N)
    parts = [run_prog(prog, ab[:, :100]), run_prog(prog, ab[:, 100:130]), run_prog(prog, ab[:, 130:])]
    assert_close(np.concatenate(parts, axis=1)[0], spectral_loss_expected(ab[0], ab[1], W), atol=1e-9)


def test_mse():
    rng = np.random.default_rng(180)
    a, b = rng.normal(size=(2, 777))
    g = dgen.Graph()
    g.n(Op.output(0), g.n(Op.mse, g.n(Op.input(0)), g.n(Op.input(1))))
    g.n(Op.output(1), g.n(Op.mse, g.n(Op.input(0)), 0.5))
    y = run_graph(g, np.stack([a, b]))
    assert_close(y[0], (a - b) ** 2)
    assert_close(y[1], (a - 0.5) ** 2)
