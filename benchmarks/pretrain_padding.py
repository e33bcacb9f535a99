"""Cost of one `mxt pretrain` step: batches drawn straight from the shuffle vs grouped by length.

Reads the given text files as `mxt pretrain` does, trains the config's tokenizer, then draws batches
two ways: ``stream`` (texts in shuffle order, what pretraining did before length pools) and ``pools``
(:class:`mxt_sdk.training.pretrain.Batches`). Prints the share of input positions that are tokens
(not padding) over ``--fill-steps`` steps of each, then times optimizer steps (forward, backward,
AdamW; CPU seconds of this process, one torch thread) of the same starting weights on each, the two
taking turns in rounds so that the machine's load falls on both alike. One JSON line.

    python benchmarks/pretrain_padding.py --config mxt-cpu ../shared/data/implicitave/train_text/*/train.tsv
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from mxt_sdk.config import load_config
from mxt_sdk.data.texts import read_texts
from mxt_sdk.training import pretrain as pretraining


class StreamBatches(pretraining.Batches):
    """Step ``s`` takes texts ``s*B .. s*B+B-1`` of the shuffled stream as they come."""

    def texts(self, step: int) -> list[list[int]]:
        return [self._text(step * self.batch_size + i) for i in range(self.batch_size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--config", default="mxt-cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps-per-round", type=int, default=15)
    parser.add_argument("--fill-steps", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    generator = pretraining.build_generator(config, None)
    texts = read_texts(args.inputs, None).texts
    pretraining._prepare_tokenizer(generator, texts, None)
    tokenizer = generator.tokenizer
    sequences = pretraining._tokenized(tokenizer, texts, config.model.max_input_tokens - 1)
    common = (sequences, args.batch_size, config.training.seed, tokenizer.convert_tokens_to_ids(pretraining.SENTINELS),
              tokenizer.eos_token_id, tokenizer.pad_token_id, "reconstruct")
    ways = {"stream": StreamBatches(*common), "pools": pretraining.Batches(*common)}

    def fill(batches) -> float:
        tokens = positions = 0
        for step in range(args.fill_steps):
            ids = batches(step)["input_ids"]
            tokens, positions = tokens + int((ids != tokenizer.pad_token_id).sum()), positions + ids.numel()
        return tokens / positions

    generator.train()
    start = copy.deepcopy(generator.state_dict())
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(args.rounds):
        for name, batches in ways.items():
            generator.load_state_dict(start)
            optimizer = torch.optim.AdamW(generator.parameters(), lr=config.training.learning_rate)
            for step in range(round_ * pretraining.POOL_BATCHES, round_ * pretraining.POOL_BATCHES + args.steps_per_round):
                batch = batches(step)
                began = time.process_time()
                pretraining._step_loss(generator, batch).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                seconds[name].append(time.process_time() - began)
    mean = {name: statistics.fmean(values) for name, values in seconds.items()}
    print(json.dumps({"texts": len(sequences), "batch_size": args.batch_size, "steps_timed": len(seconds["pools"]),
                      "fill": {name: round(fill(b), 3) for name, b in ways.items()},
                      "cpu_seconds_per_step": {name: round(v, 3) for name, v in mean.items()},
                      "ratio": round(mean["stream"] / mean["pools"], 2)}))


if __name__ == "__main__":
    main()
