"""Linear CKA between a neuron subset and the whole layer, from the centred Gram by indexing.

With centred features `X` and `G = XᵀX`:
`CKA(X_S, X) = ‖X_Sᵀ X‖²_F / (‖X_Sᵀ X_S‖_F ‖XᵀX‖_F) = ‖G[S,:]‖²_F / (‖G[S,S]‖_F ‖G‖_F)`.
This is the biased (plain HSIC) estimator of Kornblith et al. (2019), on raw, not standardised,
features, as in the paper.
"""

from __future__ import annotations

import numpy as np
import torch


class GramCKA:
    """Part-versus-whole linear CKA for many subsets of one layer."""

    def __init__(self, centred_gram: np.ndarray, device: str | torch.device = "cpu") -> None:
        self.gram = torch.as_tensor(centred_gram, dtype=torch.float64, device=device)
        self.norm_full = float(torch.linalg.matrix_norm(self.gram))
        self.device = self.gram.device

    def __call__(self, subset: np.ndarray) -> float:
        idx = torch.as_tensor(subset, device=self.device, dtype=torch.long)
        rows = self.gram[idx]
        cross = float((rows**2).sum())
        self_norm = float(torch.linalg.matrix_norm(rows[:, idx]))
        if self_norm == 0.0 or self.norm_full == 0.0:
            return 0.0
        return cross / (self_norm * self.norm_full)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between two feature matrices over the same samples (rows), via sample Grams.

    The slow, obvious computation: centre the n × n kernels and take the normalised HSIC.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    h = np.eye(n) - 1.0 / n
    k = h @ (x @ x.T) @ h
    l = h @ (y @ y.T) @ h
    return float((k * l).sum() / np.sqrt((k * k).sum() * (l * l).sum()))
