"""Linear probes on neuron subsets, and the seeded subset sampling they share."""

from redundancy.probing.ridge import ProbeResult, RidgeProber
from redundancy.probing.subsets import SubsetPlan, draw_subset, plan_subsets, sample_subset

__all__ = ["ProbeResult", "RidgeProber", "SubsetPlan", "draw_subset", "plan_subsets", "sample_subset"]
