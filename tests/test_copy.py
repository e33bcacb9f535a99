"""The t5 generator's pointer-generator copy head: a proper distribution, consistent scores, and it
generates tokens it never saw as answers."""
from __future__ import annotations

import pytest
import torch

from mxt_sdk.plugins import manager
from mxt_t5.copy import CopyHead

MARKER = 3  # in the toy task, the answer is the token that follows this id


def _generator(copy: bool, **options):
    torch.manual_seed(0)
    return manager.create("generators", "t5", {"tokenizer": "byte", "d_model": 32, "d_ff": 64, "num_layers": 2,
                                               "num_heads": 4, "dropout_rate": 0.0, "copy_mechanism": copy, **options})


def _toy_batch(generator, low: int, high: int, size: int, seed: int):
    """Prompts of 10 random ids in [low, high) with MARKER before one of them; the answer is that id."""
    rng = torch.Generator().manual_seed(seed)
    ids = torch.randint(low, high, (size, 10), generator=rng)
    where = torch.randint(0, 9, (size,), generator=rng)
    ids[torch.arange(size), where] = MARKER
    answer = ids[torch.arange(size), where + 1]
    eos = generator.model.config.eos_token_id
    input_ids = torch.cat([ids, torch.full((size, 1), eos)], dim=1)
    labels = torch.stack([answer, torch.full((size,), eos)], dim=1)
    return input_ids, torch.ones_like(input_ids), labels


def test_mixture_is_a_distribution():
    torch.manual_seed(1)
    vocab_logprobs = torch.log_softmax(torch.randn(3, 50), -1)
    attention = torch.softmax(torch.randn(3, 7), -1)
    log_switch = torch.nn.functional.logsigmoid(torch.tensor([[0.3], [-2.0], [4.0]]) * torch.tensor([1.0, -1.0]))
    input_ids = torch.randint(0, 50, (3, 7))
    mixture = CopyHead.mixture_logprobs(vocab_logprobs, attention, log_switch, input_ids)
    assert torch.allclose(mixture.exp().sum(-1), torch.ones(3), atol=1e-5)
    targets = torch.randint(0, 50, (3, 1))
    direct = CopyHead.token_logprobs(vocab_logprobs[:, None], attention[:, None], log_switch[:, None], input_ids,
                                     targets)
    assert torch.allclose(direct[:, 0], mixture.gather(-1, targets)[:, 0], atol=1e-5)


def test_greedy_scores_equal_the_teacher_forced_scores_of_its_answer():
    generator = _generator(copy=True, copy_switch_loss=0.0).eval()  # the loss is then the answers' NLL
    input_ids, mask, _ = _toy_batch(generator, 10, 200, 4, seed=5)
    with torch.no_grad():
        hidden = generator.encode(generator.embed(input_ids), mask)
        out = generator.greedy(hidden, mask, 3, input_ids=input_ids)
        labels = out.token_ids.clone()
        for row in labels:  # ignore what follows the first EOS, as training does
            eos = (row == generator.model.config.eos_token_id).nonzero()
            if len(eos):
                row[int(eos[0]) + 1:] = -100
        loss = generator.loss(hidden, mask, labels, input_ids=input_ids)
    scored = (labels != -100).sum()
    assert float(-out.token_logprobs.sum() / scored) == pytest.approx(float(loss), rel=1e-4)


@pytest.mark.parametrize("copy", [False, True])
def test_rows_that_end_early_leave_the_batch_without_changing_any_answer(copy):
    generator = _generator(copy=copy).eval()
    eos = generator.model.config.eos_token_id
    with torch.no_grad():  # a large EOS embedding: some rows end at once, others run to the bound
        generator.model.shared.weight[eos] *= 40.0
        input_ids, mask, _ = _toy_batch(generator, 10, 200, 12, seed=7)
        mask[::3, 7:] = 0  # rows of different lengths (right padding)
        input_ids = input_ids.masked_fill(mask == 0, generator.model.config.pad_token_id)
        hidden = generator.encode(generator.embed(input_ids), mask)
        widths = []
        decode = generator._decode
        generator._decode = lambda *args: widths.append(args[2].size(0)) or decode(*args)
        batch = generator.greedy(hidden, mask, 5, input_ids=input_ids)
        del generator._decode
        alone = [generator.greedy(hidden[i:i + 1], mask[i:i + 1], 5, input_ids=input_ids[i:i + 1]) for i in range(12)]
    lengths = [int((row == eos).nonzero()[0]) + 1 if (row == eos).any() else 5 for row in batch.token_ids]
    assert min(lengths) < max(lengths)  # the case the test is about happened
    assert widths == sorted(widths, reverse=True) and widths[-1] < 12  # finished rows were dropped
    for row, single in enumerate(alone):
        steps = single.token_ids.size(1)
        assert batch.token_ids[row, :steps].tolist() == single.token_ids[0].tolist()
        assert (batch.token_ids[row, steps:] == generator.model.config.pad_token_id).all()
        assert batch.token_logprobs[row, :steps].tolist() == pytest.approx(single.token_logprobs[0].tolist(), abs=1e-5)
        assert (batch.token_logprobs[row, steps:] == 0).all()


def _train_and_score(copy: bool) -> float:
    generator = _generator(copy)
    optimizer = torch.optim.AdamW(generator.parameters(), lr=3e-3)
    for step in range(150):
        input_ids, mask, labels = _toy_batch(generator, 10, 190, 32, seed=step)
        hidden = generator.encode(generator.embed(input_ids), mask)
        loss = generator.loss(hidden, mask, labels, input_ids=input_ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    generator.eval()
    input_ids, mask, labels = _toy_batch(generator, 190, 380, 200, seed=10_000)  # ids never seen in training
    with torch.no_grad():
        out = generator.greedy(generator.encode(generator.embed(input_ids), mask), mask, 2, input_ids=input_ids)
    return float((out.token_ids[:, 0] == labels[:, 0]).float().mean())


@pytest.mark.slow
def test_copy_generates_tokens_never_seen_in_training_and_plain_t5_does_not():
    assert _train_and_score(copy=True) >= 0.9
    assert _train_and_score(copy=False) <= 0.05


def test_continuation_features_favour_the_token_after_the_answer_so_far():
    head = CopyHead(4)
    with torch.no_grad():
        head.continuation.copy_(torch.tensor([1.0, 2.0, 0.5]))
    input_ids = torch.tensor([[5, 6, 7, 6, 8]])
    answer_so_far = torch.tensor([[-1, 5, 6]])  # step 0: y_{-1} none, y_0 = 5; step 1: y_0 = 5, y_1 = 6
    follows, bonus = head._continuation_bonus(input_ids, answer_so_far)
    assert follows.tolist() == [[[False, True, False, False, False], [False, False, True, False, True]]]
    # position 2 follows "5 6" (both features), position 4 follows only "6"
    assert bonus.tolist() == [[[0.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0, 1.0]]]


def test_the_switch_leans_to_copying_only_where_the_answer_stops_inside_a_word():
    torch.manual_seed(0)
    head = CopyHead(8).eval()
    hidden, embeds, text = torch.randn(1, 2, 8), torch.randn(1, 2, 8), torch.randn(1, 4, 8)
    input_ids, copyable = torch.tensor([[5, 6, 7, 9]]), torch.ones(1, 4, dtype=torch.bool)
    answer_so_far = torch.tensor([[-1, 5, 7]])  # step 0 continues at "6", step 1 at "9"
    inside = torch.tensor([[False, True, False, False]])  # "6" continues the word "5 6"; "9" starts one
    with torch.no_grad():
        _, plain = head.attend(hidden, embeds, text, copyable, input_ids, answer_so_far, torch.zeros_like(inside))
        _, leaning = head.attend(hidden, embeds, text, copyable, input_ids, answer_so_far, inside)
    assert leaning[0, 0, 1] > plain[0, 0, 1]  # more copy mass where the word goes on
    assert torch.equal(leaning[0, 1], plain[0, 1])


def test_the_supervised_switch_loss_asks_to_copy_exactly_the_answer_tokens_the_prompt_holds():
    generator = _generator(copy=True)
    eos = generator.model.config.eos_token_id
    input_ids = torch.tensor([[7, 8, 9, eos]])
    copyable = torch.ones_like(input_ids, dtype=torch.bool)
    labels = torch.tensor([[8, 42, eos, -100]])  # 8 is in the prompt, 42 is not, the end is generated
    log_switch = torch.log(torch.tensor([[[0.2, 0.8], [0.6, 0.4], [0.9, 0.1], [0.5, 0.5]]]))  # (p_gen, 1 - p_gen)
    loss = generator._switch_loss(log_switch, input_ids, copyable, labels)
    expected = -(torch.log(torch.tensor(0.8)) + torch.log(torch.tensor(0.6)) + torch.log(torch.tensor(0.9))) / 3
    assert torch.allclose(loss, expected)
