"""Tokenizers for the T5 generator: the checkpoint's own, byte-level, or Unigram trained on data
(deterministically, with SentencePiece)."""
from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, ByT5Tokenizer, PreTrainedTokenizerFast

from mxt_sdk.data.prompt import find_subsequence  # noqa: F401  (kept importable from here)

# T5's layout of special ids: pad=0 (also the decoder start), eos=1, unk=2.
SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]
MAX_TEXT_CHARACTERS = 16_384  # a longer training text is cut (prompts are cut far shorter anyway)
MAX_SENTENCES = 5_000_000  # more training texts than this: a seeded sample of them


def byte_tokenizer() -> ByT5Tokenizer:
    """ByT5's byte-level scheme: nothing to train or download, and no unknown characters."""
    return ByT5Tokenizer()


def pretrained_tokenizer(name_or_path: str):
    """The tokenizer of a hub checkpoint or a local folder."""
    return AutoTokenizer.from_pretrained(name_or_path)


def saved_tokenizer(directory: str | Path):
    """A tokenizer folder this package saved, loaded so that saving it again writes the same files
    (transformers records how it was loaded, e.g. ``is_local``, and would write that too)."""
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    for key in ("is_local", "local_files_only"):
        tokenizer.init_kwargs.pop(key, None)
    return tokenizer


def text_normalizer() -> normalizers.Normalizer:
    """NFKC, lower case, runs of whitespace as one space, no edge spaces: catalog labels are case-folded
    by the ``text`` normalizer, and the copy path needs "Nike" in a title and "nike" in a label to be
    the same pieces."""
    return normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(),
                                 normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()])


def _train_sentencepiece(texts: list[str], vocab_size: int, coverage: float, split_digits: bool) -> bytes:
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, model_type="unigram", vocab_size=vocab_size,
        split_digits=split_digits,
        hard_vocab_limit=False, normalization_rule_name="identity", character_coverage=coverage,
        num_threads=1, max_sentence_length=4 * MAX_TEXT_CHARACTERS, input_sentence_size=MAX_SENTENCES,
        shuffle_input_sentence=True, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece=SPECIAL_TOKENS[0],
        eos_piece=SPECIAL_TOKENS[1], unk_piece=SPECIAL_TOKENS[2], minloglevel=2)
    return model.getvalue()


def train_unigram_tokenizer(texts: Iterable[str], vocab_size: int, seed: int = 0,
                            split_digits: bool = False) -> PreTrainedTokenizerFast:
    """Train a Unigram tokenizer on ``texts`` with T5's special tokens and EOS post-processing.

    The pieces and their scores come from SentencePiece (the trainer of T5's own vocabulary), run on
    one thread with a fixed seed: the same texts give the same tokenizer files in every process (the
    ``tokenizers`` trainers iterate hash maps and do not; huggingface/tokenizers#1794). They are
    loaded into a ``tokenizers`` Unigram model behind :func:`text_normalizer` (applied to the texts
    before training too), so encoding matches SentencePiece's. The result may be smaller than
    ``vocab_size`` when the text is small; ids never exceed it. With ``split_digits`` no piece holds two
    digits (SentencePiece's option of that name, as LLaMA's tokenizer does), so every number is spelt with
    the same few pieces, each trained by every number of the catalog.
    """
    normalizer = text_normalizer()
    corpus = [text for text in (normalizer.normalize_str(t[:MAX_TEXT_CHARACTERS]) for t in texts) if text]
    if not corpus:
        raise ValueError("Cannot train a tokenizer: the training text is empty.")
    sentencepiece.set_random_generator_seed(seed)  # only used to sample beyond MAX_SENTENCES sentences
    try:
        proto = _train_sentencepiece(corpus, vocab_size, 1.0, split_digits)
    except RuntimeError as error:
        if "required_chars" not in str(error):
            raise
        try:  # more distinct characters than pieces: leave the rarest ones unknown, as T5 did
            proto = _train_sentencepiece(corpus, vocab_size, 0.9995, split_digits)
        except RuntimeError:
            raise ValueError(f"Cannot train a tokenizer of {vocab_size} pieces: the text has more distinct "
                             "characters than that; raise the vocabulary size.") from error
    processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")
