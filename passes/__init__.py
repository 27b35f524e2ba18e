"""Our Relax/TIR passes. Each module holds one pass that can be used on its own."""

from edgec.passes.layout import PlanLayout
from edgec.passes.lift_weights import LiftWeights

__all__ = ["LiftWeights", "PlanLayout"]
