"""edgec: an ahead-of-time compiler for deploying neural networks to edge devices."""

__version__ = "0.1.0"

from edgec.api import Artifact, compile, load  # noqa: E402,A004

__all__ = ["Artifact", "compile", "load", "__version__"]
