"""Tokenizers for the T5 generator: the checkpoint's own, byte-level, or Unigram trained on data."""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, ByT5Tokenizer, PreTrainedTokenizerFast

# T5's layout of special ids: pad=0 (also the decoder start), eos=1, unk=2.
SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]


def byte_tokenizer() -> ByT5Tokenizer:
    """ByT5's byte-level scheme: nothing to train or download, and no unknown characters."""
    return ByT5Tokenizer()


def pretrained_tokenizer(name_or_path: str):
    """The tokenizer of a hub checkpoint or a local folder."""
    return AutoTokenizer.from_pretrained(name_or_path)


def train_unigram_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a Unigram tokenizer on ``texts`` with T5's special tokens and EOS post-processing.

    The result may be smaller than ``vocab_size`` when the text is small; ids never exceed it.
    """
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                      unk_token="<unk>", show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")
