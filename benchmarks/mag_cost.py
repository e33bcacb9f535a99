"""MAG's cost, forward and backward, as written now against the direct transcription of its equations.

The gate ``W_g [T_i ; V]`` and the displacement ``W_H V`` used to be computed for every token from the
image vector repeated along the sequence; ``plugins/mxt_fusions/mag.py`` now computes the image's
terms once per product (``W_g [T_i ; V] = W_g,T T_i + W_g,V V``). Both run interleaved, 30 rounds, one
thread, at mxt-cpu's sizes (text width 128, EfficientNet-Lite0's 1280-wide vector), and must agree.

    python benchmarks/mag_cost.py
"""
from __future__ import annotations

import statistics
import time

import torch

BATCH, TOKENS, TEXT, IMAGE, ROUNDS = 32, 64, 128, 1280, 30


def main() -> int:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    gate, displacement = torch.nn.Linear(TEXT + IMAGE, TEXT), torch.nn.Linear(IMAGE, TEXT, bias=False)
    hidden, image = torch.randn(BATCH, TOKENS, TEXT, requires_grad=True), torch.rand(BATCH, IMAGE)

    def per_token() -> torch.Tensor:
        repeated = image[:, None, :].expand(-1, TOKENS, -1)
        return torch.relu(gate(torch.cat([hidden, repeated], -1))) * displacement(repeated)

    def per_product() -> torch.Tensor:
        text_part = torch.nn.functional.linear(hidden, gate.weight[:, :TEXT], gate.bias)
        image_part = torch.nn.functional.linear(image, gate.weight[:, TEXT:])[:, None]
        return torch.relu(text_part + image_part) * displacement(image)[:, None]

    assert torch.allclose(per_token(), per_product(), atol=1e-5)
    times: dict[str, list[float]] = {"per token": [], "per product": []}
    for _ in range(ROUNDS):
        for name, function in (("per token", per_token), ("per product", per_product)):
            started = time.perf_counter()
            function().sum().backward()
            times[name].append(time.perf_counter() - started)
    old, new = (statistics.median(times[name]) for name in ("per token", "per product"))
    print(f"MAG forward+backward, {BATCH} x {TOKENS} tokens, median of {ROUNDS}: image terms per token "
          f"{old * 1e3:.1f} ms, per product {new * 1e3:.1f} ms ({old / new:.1f}x less)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
