"""The errors edgec shows to users.

Every error a user can cause or meet is an :class:`EdgecError` with a one-line message. The exit
code lives on the class, so the CLI maps errors to exit codes in one place:

====  =====================================================================================
code  meaning
====  =====================================================================================
0     success
1     the work failed: the compiler failed, or verification found a mismatch
2     bad usage or bad input: a malformed model, unknown target, missing toolchain, wrong
      inputs, a corrupted artifact or database
====  =====================================================================================
"""

from __future__ import annotations


class EdgecError(Exception):
    """Base of every user-facing error. ``str(err)`` is one line."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


# -- exit code 2: the user's input or environment is wrong ------------------------------------


class BadInputError(EdgecError):
    """Bad usage or bad input (exit code 2)."""

    exit_code = 2


class ModelError(BadInputError):
    """The model file is missing, truncated, malformed or fails the ONNX checker."""


class UnsupportedOperatorError(BadInputError):
    """The model uses operators edgec cannot convert; the message names every one."""

    def __init__(self, unsupported: list[tuple[str, str, str, int]]):
        # unsupported: (op_type, domain, node name, opset) for every offending node
        self.unsupported = unsupported
        parts = [
            f"{(domain + '::') if domain else ''}{op} (node '{name}', opset {opset})"
            for op, domain, name, opset in unsupported
        ]
        kinds = sorted({u[0] for u in unsupported})
        super().__init__(
            f"{len(unsupported)} node(s) use unsupported operators {kinds}: " + "; ".join(parts)
        )


class TargetError(BadInputError):
    """Unknown target name, malformed target JSON, or a target option that does not apply."""


class ToolchainError(BadInputError):
    """A compiler, emulator or runtime library that the target needs is not installed."""


class InputError(BadInputError):
    """Wrong input names, shapes or dtypes, given to compile (--input) or to run."""


class ArtifactError(BadInputError):
    """The artifact is corrupted, truncated, from a newer format, or built for another device."""


class DatabaseError(BadInputError):
    """A tuning database is corrupted or unreadable."""


# -- exit code 1: the work itself failed ------------------------------------------------------


class CompileError(EdgecError):
    """TVM failed to convert, optimize or build the model."""


class UnsupportedAttributeError(CompileError):
    """A valid model uses a converted operator with an attribute or input edgec does not implement
    (LSTM with custom activations, say); the message names the node and the value."""


class VerificationError(EdgecError):
    """The compiled artifact's outputs differ from the reference beyond tolerance."""


class ExecutionError(EdgecError):
    """Running the artifact failed (on the host, under emulation, or on a remote device)."""
