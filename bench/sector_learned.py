"""The learned sector guess (`streams.readiness.learned`): train it, write its weights, and score it beside the rules.

    .venv/bin/python -m bench.sector_learned            # train on labels.jsonl, score on labels_heldout.jsonl
    .venv/bin/python -m bench.sector_learned --write    # ... and write streams/readiness/learned.json

A logistic regression per sector over the words and word pairs of a tender's title and description and the words of
its eTenders category (binary features scaled by one over the square root of their number; torch's L-BFGS, L2
penalty), trained on the tuning set only (labels.jsonl; features seen in at least `--min-count` tuning tenders) and
scored on the held-out set (labels_heldout.jsonl): the model alone, the rules alone, and the product's combination,
the rules plus the model's one guess on the tenders the rules find no sector in. Weights below `--prune` in size are
left out of the file. Needs torch (the `ml` extra); the product reads the file in pure Python. Figures in
bench/README.md.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from bench.sector_match import Labelled, load
from streams.readiness import learned
from streams.readiness.sectors import PASS_THRESHOLD, tender_evidence
from streams.readiness.taxonomy import CONCEPTS

SECTORS = [c.id for c in CONCEPTS]


def tender_features(item: Labelled) -> frozenset[str]:
    t = item.tender
    return learned.features(t["category"], t["title"], t["description"])


def matrix(data: Sequence[Labelled], vocab: dict[str, int]) -> np.ndarray:
    x = np.zeros((len(data), len(vocab)), dtype=np.float32)
    for row, item in enumerate(data):
        found = tender_features(item)
        for name in found:
            column = vocab.get(name)
            if column is not None:
                x[row, column] = 1.0 / max(1.0, len(found) ** 0.5)
    return x


def labels(data: Sequence[Labelled]) -> np.ndarray:
    return np.array([[s in item.sectors for s in SECTORS] for item in data], dtype=np.float32)


def fit(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    xt, yt = torch.tensor(x), torch.tensor(y)
    w = torch.zeros(x.shape[1], y.shape[1], requires_grad=True)
    b = torch.zeros(y.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def train(data: Sequence[Labelled], l2: float, min_count: int, prune: float, threshold: float) -> learned.Model:
    counts = Counter(name for item in data for name in tender_features(item))
    vocab = {name: n for n, name in enumerate(sorted(k for k, v in counts.items() if v >= min_count))}
    w, b = fit(matrix(data, vocab), labels(data), l2)
    names = sorted(vocab, key=vocab.__getitem__)
    weights = {
        s: {names[i]: round(float(w[i, j]), 4) for i in range(len(names)) if abs(float(w[i, j])) >= prune}
        for j, s in enumerate(SECTORS)
    }
    bias = {s: round(float(b[j]), 4) for j, s in enumerate(SECTORS)}
    trained_on = f"labels.jsonl: {len(data)} tenders; l2 {l2:g}, min count {min_count}, prune {prune:g}"
    return learned.parse({"threshold": threshold, "trained_on": trained_on, "bias": bias, "weights": weights})


def f1(said: np.ndarray, meant: np.ndarray) -> str:
    tp = float((said * meant).sum())
    p = tp / max(float(said.sum()), 1.0)
    r = tp / max(float(meant.sum()), 1.0)
    return f"F1 {2 * p * r / (p + r) if p + r else 0.0:.3f}  P {p:.3f}  R {r:.3f}"


def passes(data: Sequence[Labelled], model: learned.Model | None) -> np.ndarray:
    rows = []
    for item in data:
        t = item.tender
        evidence = tender_evidence(t["category"], t["title"], t["description"], model=model)
        rows.append([evidence.strength(s) >= PASS_THRESHOLD for s in SECTORS])
    return np.array(rows, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--l2", type=float, default=3e-7)
    parser.add_argument("--min-count", type=int, default=3)
    parser.add_argument("--prune", type=float, default=0.5)
    parser.add_argument("--threshold", type=float, default=0.5, help="the probability a guess needs")
    parser.add_argument("--write", action="store_true", help=f"write the trained weights to {learned.SOURCE}")
    args = parser.parse_args()
    train_set, test = load(labels="labels.jsonl"), load(labels="labels_heldout.jsonl")
    model = train(train_set, args.l2, args.min_count, args.prune, args.threshold)
    size = sum(len(w) for w in model.weights.values())
    print(f"train {len(train_set)} tenders, test {len(test)} held-out; {size} weights kept ({model.trained_on})")
    y = labels(test)
    alone = np.array(
        [[model.probabilities(tender_features(item))[s] >= args.threshold for s in SECTORS] for item in test],
        dtype=np.float32,
    )
    print(f"model alone       {f1(alone, y)}")
    print(f"rules alone       {f1(passes(test, None), y)}")
    print(f"rules + guess     {f1(passes(test, model), y)}")
    if args.write:
        data = {
            "threshold": model.threshold,
            "trained_on": model.trained_on,
            "bias": dict(model.bias),
            "weights": {s: dict(sorted(w.items())) for s, w in model.weights.items()},
        }
        learned.SOURCE.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
        print(f"wrote {learned.SOURCE}")


if __name__ == "__main__":
    main()
