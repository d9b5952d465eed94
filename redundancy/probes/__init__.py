"""Linear probes on neuron subsets, and the seeded subset sampling they share."""

from redundancy.probes.ridge import ProbeResult, RidgeProber
from redundancy.probes.subsets import SubsetPlan, draw_subset, plan_subsets, sample_subset

__all__ = ["ProbeResult", "RidgeProber", "SubsetPlan", "draw_subset", "plan_subsets", "sample_subset"]
