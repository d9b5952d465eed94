"""The batched logistic probe against training each subset on its own, and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from redundancy.errors import Cancelled
from redundancy.probing.logistic import _chunks, step_milestones, train_logistic_grid


def _problem(n: int = 600, d: int = 24, c: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    m = n + 400
    y = rng.integers(0, c, size=m)
    means = rng.normal(size=(c, d)) * 0.6
    x = means[y] + rng.normal(size=(m, d)) * rng.uniform(0.5, 2.0, size=d) + rng.uniform(-3, 3, size=d)
    x = x.astype(np.float32)
    return x[:n], y[:n], x[n : n + 200], y[n : n + 200], x[n + 200 :], y[n + 200 :]


def _train_one(x, y, xv, yv, xt, yt, subset, c, *, epochs, batch_size, lr, momentum, wd, seed):
    """The plain loop: one nn.Linear on the subset's standardised columns, same order, same init."""
    x64 = np.asarray(x, dtype=np.float64)
    mu, sd = x64.mean(0), x64.std(0)

    def z(a):
        return torch.as_tensor(((np.asarray(a, np.float64) - mu) / sd)[:, subset], dtype=torch.float32)

    zt, zv, zs = z(x), z(xv), z(xt)
    yt_t = torch.as_tensor(y)
    lin = torch.nn.Linear(len(subset), c)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.SGD(lin.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=step_milestones(epochs), gamma=0.1)
    gen = torch.Generator().manual_seed(seed)
    orders = [torch.randperm(len(y), generator=gen) for _ in range(epochs)]
    best, best_state = -1.0, None
    for epoch in range(epochs):
        for start in range(0, len(y), batch_size):
            rows = orders[epoch][start : start + batch_size]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(lin(zt[rows]), yt_t[rows]).backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            acc = float((lin(zv).argmax(1).numpy() == yv).mean())
        if acc > best:
            best = acc
            best_state = (lin.weight.detach().T.clone().numpy(), lin.bias.detach().clone().numpy())
    w, b = best_state
    pred = (zs.numpy() @ w + b).argmax(1)
    return float((pred == yt).mean()), w, b


def test_batched_matches_each_subset_trained_alone() -> None:
    x, y, xv, yv, xt, yt = _problem()
    c = 4
    rng = np.random.default_rng(1)
    subsets = [np.sort(rng.choice(24, size=k, replace=False)) for k in (1, 3, 3, 8, 8, 8)] + [np.arange(24)]
    hp = dict(epochs=6, batch_size=64, lr=0.1, momentum=0.9, seed=3)
    results = train_logistic_grid(
        x, y, xv, yv, xt, yt, subsets, c, weight_decay=5e-3, keep_weights=True, **hp
    )
    assert len(results) == len(subsets)
    for subset, res in zip(subsets, results, strict=True):
        acc, w, b = _train_one(x, y, xv, yv, xt, yt, subset, c, wd=5e-3, **hp)
        np.testing.assert_allclose(res.coef, w, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(res.intercept, b, rtol=1e-3, atol=1e-4)
        assert abs(res.accuracy - acc) <= 0.01
        assert res.correct is not None and res.correct.shape == yt.shape
        assert res.accuracy == pytest.approx(res.correct.mean())
        assert 0 <= res.best_epoch < hp["epochs"]
        assert res.lam == 5e-3
    # more neurons help on this problem: the full layer beats the single neuron clearly
    assert results[-1].accuracy > results[0].accuracy + 0.1


def test_chunked_training_gives_the_same_result() -> None:
    x, y, xv, yv, xt, yt = _problem(n=300)
    subsets = [np.arange(k) for k in (2, 5, 5, 24)]
    assert len(_chunks(subsets, 4, max_params=30)) > 1
    whole = train_logistic_grid(x, y, xv, yv, xt, yt, subsets, 4, epochs=3, keep_weights=True)
    parts = train_logistic_grid(x, y, xv, yv, xt, yt, subsets, 4, epochs=3, keep_weights=True, max_params=30)
    for a, b in zip(whole, parts, strict=True):
        np.testing.assert_allclose(a.coef, b.coef, rtol=1e-5, atol=1e-6)
        assert a.accuracy == b.accuracy
        np.testing.assert_array_equal(a.per_class_accuracy, b.per_class_accuracy)


def test_full_layer_accuracy_close_to_sklearn() -> None:
    x, y, xv, yv, xt, yt = _problem(n=1000, seed=5)
    res = train_logistic_grid(x, y, xv, yv, xt, yt, [np.arange(24)], 4, epochs=20, weight_decay=1e-4)[0]
    mu, sd = x.mean(0), x.std(0)
    ref = LogisticRegression(C=1.0, max_iter=2000).fit((x - mu) / sd, y)
    ref_acc = ref.score((xt - mu) / sd, yt)
    assert abs(res.accuracy - ref_acc) <= 0.03
    per_class = np.array([res.correct[yt == k].mean() for k in range(4)])
    np.testing.assert_allclose(res.per_class_accuracy, per_class)


def test_progress_and_cancellation() -> None:
    x, y, xv, yv, xt, yt = _problem(n=200)
    seen: list[float] = []
    train_logistic_grid(x, y, xv, yv, xt, yt, [np.arange(3)], 4, epochs=4, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) == 4
    with pytest.raises(Cancelled):
        train_logistic_grid(x, y, xv, yv, xt, yt, [np.arange(3)], 4, epochs=2, should_stop=lambda: True)


def test_step_milestones() -> None:
    assert step_milestones(30) == [15, 22]
    assert step_milestones(1) == []
    assert step_milestones(4) == [2, 3]
