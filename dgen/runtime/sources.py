"""What a kernel's source slots read: an input channel, a forward value from the tape, or a
value an earlier step computed. Shared by the C and CUDA kernels (the kernel contract of
interp.ReferenceKernel: `execute(mem, frames, inputs, tape)`)."""

from __future__ import annotations


def missing_tape(key) -> ValueError:
    return ValueError(f"the graph reads the tape of forward node {key}; it was not given")


def source_signal(kind, key, ins, tape, values, node):
    """The array behind a source slot of `kind` ("input", "tape" or a computed value)."""
    if kind == "input":
        if key >= len(ins):
            raise ValueError(f"the graph reads input channel {key}; {len(ins)} channel(s) given")
        return ins[key]
    if kind == "tape":
        if key not in tape:
            raise missing_tape(key)
        return tape[key]
    return values[node]
