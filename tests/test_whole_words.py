"""Whole-word decoding (mxt_t5.words): an answer copied from the prompt never ends inside a word."""
from __future__ import annotations

import torch

from mxt_sdk.plugins import manager
from mxt_t5.tokenizers import train_unigram_tokenizer
from mxt_t5.words import WholeWordGuard, WordTables

TEXTS = ["leather boots", "cotton shirt", "polyester dress", "wool coat", "kaven shoe", "nox bag", "slip on"] * 40


def _tokenizer():
    return train_unigram_tokenizer(TEXTS, 120)


def _guard(tokenizer, prompt: str) -> tuple[WholeWordGuard, list[int]]:
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    prompt_ids = torch.tensor([ids])
    return WholeWordGuard(WordTables().update(tokenizer), prompt_ids, torch.ones_like(prompt_ids, dtype=torch.bool)), ids


def _end_blocked(guard: WholeWordGuard, eos: int, vocab: int) -> bool:
    logprobs = torch.log_softmax(torch.zeros(1, vocab), -1)
    return bool(torch.isinf(guard.constrain(logprobs, eos)[0, eos]))


def _word_pieces(tokenizer, ids: list[int], word: str) -> int:
    """How many of the prompt's first pieces spell ``word``."""
    for count in range(1, len(ids) + 1):
        if tokenizer.decode(ids[:count]).strip() == word:
            return count
    raise AssertionError(f"{word!r} is not at the start of the prompt")


def test_an_answer_cut_inside_a_copied_word_may_not_end():
    tokenizer = _tokenizer()
    guard, ids = _guard(tokenizer, "kavennox leather boots")
    eos, vocab = tokenizer.eos_token_id, len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    word = _word_pieces(tokenizer, ids, "kavennox")
    assert word >= 3, pieces  # a word of several pieces, never seen whole
    assert not _end_blocked(guard, eos, vocab)  # nothing generated yet
    for position in range(word - 1):
        guard.advance(torch.tensor([ids[position]]))
        # cut after a piece ending in a letter, before one continuing the word: may not end
        assert _end_blocked(guard, eos, vocab) == pieces[position][-1].isalnum(), pieces[:position + 1]
    guarded = guard.constrain(torch.log_softmax(torch.randn(1, vocab), -1), eos)
    assert torch.allclose(guarded.exp().sum(-1), torch.ones(1), atol=1e-5)  # renormalised
    guard.advance(torch.tensor([ids[word - 1]]))  # "kavennox": a whole word
    assert not _end_blocked(guard, eos, vocab)


def test_an_answer_never_starts_with_a_piece_that_continues_a_word():
    tokenizer = _tokenizer()
    guard, ids = _guard(tokenizer, "kavennox leather boots")
    first = guard.constrain(torch.log_softmax(torch.randn(1, len(tokenizer)), -1), tokenizer.eos_token_id)
    assert torch.allclose(first.exp().sum(-1), torch.ones(1), atol=1e-5)
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    for token, piece in enumerate(pieces):
        continues = piece[:1].isalnum() and token not in tokenizer.all_special_ids
        assert bool(torch.isinf(first[0, token])) == continues, piece
    assert any(p[:1].isalnum() for p in pieces) and any(p.startswith("\u2581") for p in pieces)


def test_punctuation_is_a_word_boundary_and_other_answers_are_untouched():
    tokenizer = _tokenizer()
    eos, vocab = tokenizer.eos_token_id, len(tokenizer)
    guard, ids = _guard(tokenizer, "cotton/polyester shirt")
    for position in range(_word_pieces(tokenizer, ids, "cotton")):
        guard.advance(torch.tensor([ids[position]]))
    assert not _end_blocked(guard, eos, vocab)  # "cotton" before "/"
    guard, ids = _guard(tokenizer, "kavennox leather boots")
    not_in_prompt = tokenizer.convert_tokens_to_ids("w")
    assert not_in_prompt not in ids
    guard.advance(torch.tensor([not_in_prompt]))
    assert not _end_blocked(guard, eos, vocab)


def test_an_occurrence_that_ends_a_word_lets_the_answer_end():
    tokenizer = _tokenizer()
    eos, vocab = tokenizer.eos_token_id, len(tokenizer)
    guard, ids = _guard(tokenizer, "nox noxnox")  # "nox" occurs whole, and cut inside "noxnox"
    for position in range(_word_pieces(tokenizer, ids, "nox")):
        guard.advance(torch.tensor([ids[position]]))
    assert not _end_blocked(guard, eos, vocab)
    guard, ids = _guard(tokenizer, "noxnox")  # only cut
    pieces = _word_pieces(tokenizer, ids, "nox")
    for position in range(pieces):
        guard.advance(torch.tensor([ids[position]]))
    assert _end_blocked(guard, eos, vocab) == tokenizer.convert_ids_to_tokens(ids)[pieces - 1][-1].isalnum()


def test_greedy_with_whole_words_decodes_a_batch():
    torch.manual_seed(0)
    generator = manager.create("generators", "t5", {"tokenizer": "byte", "d_model": 32, "d_ff": 64, "num_layers": 2,
                                                    "num_heads": 4, "copy_mechanism": True, "whole_words": True})
    generator.eval()
    input_ids = torch.randint(3, 200, (3, 8))
    mask = torch.ones_like(input_ids)
    with torch.no_grad():
        guarded = generator.greedy(generator.encode(generator.embed(input_ids), mask), mask, 4, input_ids=input_ids)
        generator.options.whole_words = False
        plain = generator.greedy(generator.encode(generator.embed(input_ids), mask), mask, 4, input_ids=input_ids)
    # bytes carry no word-start marks: the guard never fires and the answers are the plain ones
    assert torch.equal(guarded.token_ids, plain.token_ids)



def test_a_first_copy_into_a_word_copies_the_piece_that_starts_it():
    tokenizer = _tokenizer()
    guard, ids = _guard(tokenizer, "kavennox leather")
    pieces = tokenizer.convert_ids_to_tokens(ids)
    first = guard.first_copy_ids()[0].tolist()
    word_start = None
    for position, piece in enumerate(pieces):
        if not piece[:1].isalnum():
            word_start = position
        assert first[position] == ids[word_start if piece[:1].isalnum() else position], (pieces, position)
    assert first != ids  # some piece continued a word


def test_a_guard_narrowed_to_some_rows_keeps_their_state():
    tokenizer = _tokenizer()
    tables = WordTables().update(tokenizer)
    rows = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("cotton shirt", "kavennox boots")]
    width = max(map(len, rows))
    prompt_ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    guard = WholeWordGuard(tables, prompt_ids, prompt_ids != 0)
    kaven = rows[1]
    guard.advance(torch.tensor([rows[0][0], kaven[0]]))
    guard.advance(torch.tensor([rows[0][1], kaven[1]]))
    blocked_before = _end_blocked_rows(guard, tokenizer)
    guard.select(torch.tensor([1]))
    assert _end_blocked_rows(guard, tokenizer) == blocked_before[1:]


def _end_blocked_rows(guard: WholeWordGuard, tokenizer) -> list[bool]:
    rows = guard.prompt_ids.size(0)
    logprobs = torch.log_softmax(torch.zeros(rows, len(tokenizer)), -1)
    return torch.isinf(guard.constrain(logprobs, tokenizer.eos_token_id)[:, tokenizer.eos_token_id]).tolist()


# --------------------------------------------------------------------------- answers bound to the text
def _bound_guard(tokenizer, prompt: str, context_start: int, none: str = "none"):
    from mxt_t5.words import TextBoundGuard

    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    prompt_ids = torch.tensor([ids, ids])
    return TextBoundGuard(WordTables().update(tokenizer), prompt_ids, torch.ones_like(prompt_ids, dtype=torch.bool),
                          torch.tensor([context_start, context_start]), torch.tensor([True, False]),
                          tokenizer(none, add_special_tokens=False)["input_ids"]), ids


def _decode_bound(tokenizer, guard, scores, steps: int = 40) -> list[int]:
    """Greedy answer of row 0 under per-token ``scores``: one vector for every step, or a function of the step."""
    eos, answer = tokenizer.eos_token_id, []
    for number in range(steps):
        vector = scores(number) if callable(scores) else scores
        step = guard.constrain(torch.log_softmax(vector.expand(2, -1).clone(), -1), eos)
        assert torch.allclose(step[0].exp().sum(), torch.tensor(1.0), atol=1e-5)  # renormalised
        choice = step.argmax(-1)
        if int(choice[0]) == eos:
            return answer
        answer.append(int(choice[0]))
        guard.advance(choice)
    raise AssertionError(f"no end after {steps} steps: {tokenizer.decode(answer)!r}")


def test_a_bound_answer_is_a_run_of_whole_words_of_the_context():
    tokenizer = _tokenizer()
    prompt = "question: brand context: kavennox leather boots"
    context = len(tokenizer("question: brand context:", add_special_tokens=False)["input_ids"])
    vocab = len(tokenizer)
    torch.manual_seed(0)
    words = set(" ".join(prompt.split()[3:][i:j]) for i in range(3) for j in range(i + 1, 4))
    for _ in range(20):  # whatever the model prefers, the answer is a run of the context's words or "none"
        guard, _ = _bound_guard(tokenizer, prompt, context)
        answer = tokenizer.decode(_decode_bound(tokenizer, guard, torch.randn(vocab) * 5)).strip()
        assert answer in words | {"none"}, answer
    # a model that would rather write the question's pieces, then end as early as it may: it still answers
    # the context's first word whole ("kavennox", never a part of it nor "brand")
    guard, ids = _bound_guard(tokenizer, prompt, context)
    word = len(tokenizer("question: brand context: kavennox", add_special_tokens=False)["input_ids"])

    def scores(step: int) -> torch.Tensor:
        vector = torch.zeros(vocab)
        vector[sorted(set(ids[:context]) - set(ids[context:]))] = 9.0  # pieces only the question holds
        vector[ids[min(context + step, word - 1)]] = 5.0  # the next piece of "kavennox"
        vector[tokenizer.eos_token_id] = 6.0  # ending is preferred wherever it is allowed
        return vector

    assert tokenizer.decode(_decode_bound(tokenizer, guard, scores)).strip() == "kavennox"


def test_a_bound_row_may_answer_none_and_unbound_rows_are_untouched():
    tokenizer = _tokenizer()
    prompt = "question: brand context: leather boots"
    context = len(tokenizer("question: brand context:", add_special_tokens=False)["input_ids"])
    vocab = len(tokenizer)
    none_ids = tokenizer("none", add_special_tokens=False)["input_ids"]
    guard, _ = _bound_guard(tokenizer, prompt, context)
    scores = torch.full((vocab,), -5.0)
    scores[none_ids] = 5.0
    assert tokenizer.decode(_decode_bound(tokenizer, guard, scores)).strip() == "none"
    guard, _ = _bound_guard(tokenizer, prompt, context)
    free = torch.log_softmax(torch.randn(2, vocab), -1)
    assert torch.equal(guard.constrain(free, tokenizer.eos_token_id)[1], free[1])
