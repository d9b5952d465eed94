"""From probe results to an answer: the δ threshold and the smallest passing fraction, fairness,
bootstrap uncertainty, refinement of f*, savings, and the answer over several datasets."""
