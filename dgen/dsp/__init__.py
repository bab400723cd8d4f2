"""Composite DSP blocks: plain functions over primitives."""

from .blocks import (
    biquad,
    clamp,
    compressor,
    delay,
    multi_spectral_loss,
    rbj_coefficients,
    sos,
    spectral_loss,
)

__all__ = ["biquad", "clamp", "compressor", "delay", "multi_spectral_loss", "rbj_coefficients", "sos", "spectral_loss"]
