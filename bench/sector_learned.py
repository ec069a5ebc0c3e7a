"""Would a model learned from the labelled tenders do better than the rules? A probe, not part of the product.

    .venv/bin/python -m bench.sector_learned

A logistic regression per sector over the words and word pairs of a tender's title and description and the words of
its eTenders category (binary features, L2-normalised; torch's L-BFGS), trained on the tuning set (labels.jsonl) and
scored on the held-out set (labels_heldout.jsonl), beside the rules, and two ways of combining them: either says yes
("or"), and the rules' yes kept unless the model is near sure it is wrong while the model's own yes needs it to be
near sure ("blend"). Needs torch (the `ml` extra). Figures in bench/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from bench.sector_match import WORDINGS, Labelled, load, predicted
from streams.readiness.taxonomy import CONCEPTS

_WORD = re.compile(r"[a-z][a-z0-9]+")
SECTORS = [c.id for c in CONCEPTS]


def features(tender: dict[str, str]) -> set[str]:
    words = _WORD.findall(f"{tender['title']} {tender['description']}".lower())
    out = set(words) | {f"{a}_{b}" for a, b in itertools.pairwise(words)}
    return out | {"cat:" + w for w in _WORD.findall(tender["category"].lower())}


def matrix(data: Sequence[Labelled], vocab: dict[str, int]) -> np.ndarray:
    x = np.zeros((len(data), len(vocab)), dtype=np.float32)
    for row, item in enumerate(data):
        for name in features(item.tender):
            column = vocab.get(name)
            if column is not None:
                x[row, column] = 1.0
    return x / np.maximum(1.0, np.sqrt(x.sum(1, keepdims=True)))


def labels(data: Sequence[Labelled]) -> np.ndarray:
    return np.array([[s in item.sectors for s in SECTORS] for item in data], dtype=np.float32)


def fit(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
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


def scores(said: np.ndarray, meant: np.ndarray) -> str:
    f, p, r = f1(said, meant)
    return f"F1 {f:.3f}  P {p:.3f}  R {r:.3f}"


def f1(said: np.ndarray, meant: np.ndarray) -> tuple[float, float, float]:
    tp = float((said * meant).sum())
    p = tp / max(float(said.sum()), 1.0)
    r = tp / max(float(meant.sum()), 1.0)
    return (2 * p * r / (p + r) if p + r else 0.0), p, r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--l2", type=float, nargs="+", default=[1e-6, 3e-6, 1e-5])
    args = parser.parse_args()
    torch.manual_seed(0)
    train, test = load(labels="labels.jsonl"), load(labels="labels_heldout.jsonl")
    counts = Counter(name for item in train for name in features(item.tender))
    vocab = {name: n for n, name in enumerate(sorted(k for k, v in counts.items() if v >= 2))}
    x_train, y_train, x_test, y_test = matrix(train, vocab), labels(train), matrix(test, vocab), labels(test)
    rules = np.array(
        [[predicted(item.tender, WORDINGS["names"])[s] for s in SECTORS] for item in test], dtype=np.float32
    )
    print(f"train {len(train)} tenders, test {len(test)} held-out, {len(vocab)} features")
    print(f"rules            {scores(rules, y_test)}")
    for l2 in args.l2:
        w, b = fit(x_train, y_train, l2)
        prob = torch.sigmoid(torch.tensor(x_test) @ w + b).numpy()
        model = (prob >= 0.3).astype(np.float32)
        blend = np.where(rules > 0, prob >= 0.1, prob >= 0.7).astype(np.float32)
        either = f1(np.maximum(model, rules), y_test)[0]
        print(f"l2 {l2:g}: model {scores(model, y_test)} | or F1 {either:.3f} | blend {scores(blend, y_test)}")


if __name__ == "__main__":
    main()
