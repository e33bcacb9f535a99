"""The MXT network assembled from registered components, and its save/load format.

``images -> encoders -> ImageFeatures`` (once per product), then per example::

    token ids -> generator.embed -> fusions@"embeddings" (MAG / concat) -> generator.encode
              -> fusions@"encoder_output" (cross-attention) -> generator.loss / generator.greedy

Examples point at their product's image features through ``image_index``, so an image is encoded
once however many attributes are asked of it. With ``context_encoding: per_product`` the text side is
shared too: each distinct (context, image) of a batch goes through the embedding, fusions and encoder
once, each distinct question through the encoder alone, and every example's encoder states are its
question's states followed by its context's (:meth:`MXTModel.encode_text`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mxt_sdk.config import ComponentSpec, ModelConfig
from mxt_sdk.data.padding import pad_batch
from mxt_sdk.data.prompt import context_marker_positions
from mxt_sdk.errors import ConfigError
from mxt_sdk.model.image_features import ImageFeatures, ImagePixels, scattered
from mxt_sdk.plugins import manager
from mxt_sdk.plugins.components import Fusion, GreedyOutput, ImageEncoder, SharedStates

__all__ = ["ImageFeatures", "ImagePixels", "MXTModel", "ENCODER_SLOTS"]

#: config field -> the ``output`` an encoder in that slot must produce
ENCODER_SLOTS = {"global_encoder": "global", "regional_encoder": "regional"}
#: suffix of the feature kind that holds an encoder's trunk map (:meth:`MXTModel.fixed_features`)
TRUNK = "_trunk"


class MXTModel(torch.nn.Module):
    """Generator + optional image encoders + fusions, built from a :class:`ModelConfig`.

    ``saved`` maps component slots to the states exported when the model was saved; with it no
    pretrained weights are fetched (the saved tensors are loaded afterwards).
    """

    def __init__(self, config: ModelConfig, saved: Mapping[str, Any] | None = None):
        super().__init__()
        saved = saved or {}
        self.config = config
        self.generator = manager.create("generators", config.generator.name, config.generator.options,
                                         saved=saved.get("generator"))
        self.encoders = torch.nn.ModuleDict()
        for slot, expected in ENCODER_SLOTS.items():
            spec: ComponentSpec | None = getattr(config, slot)
            if spec is not None:
                self.encoders[expected] = self._build_encoder(slot, expected, spec, saved.get(slot))
        #: the global features come from the regional encoder's pass (same network, loaded weights)
        self.shared_backbone = _same_network(config.global_encoder, config.regional_encoder) and \
            self.encoders["regional"].shares_pass
        if self.shared_backbone:
            del self.encoders["global"]
        self.embedding_fusions = torch.nn.ModuleList()
        self.encoder_fusions = torch.nn.ModuleList()
        for position, spec in enumerate(config.fusions):
            fusion = self._build_fusion(position, spec)
            (self.embedding_fusions if fusion.stage == "embeddings" else self.encoder_fusions).append(fusion)
        if config.context_encoding == "per_product" and getattr(self.generator, "layout", None) is not None:
            raise ConfigError("model.context_encoding 'per_product' encodes the question apart from the context, "
                              "so the generator option prompt_layout (positions within one prompt) cannot apply; "
                              "set prompt_layout: 0 or context_encoding: per_question.")
        consumed = {f.image_input for f in (*self.embedding_fusions, *self.encoder_fusions)}
        if not config.fusions:
            consumed.add("global")  # a text-only generator may keep a global encoder for the image prior alone
        for kind in self.feature_kinds - consumed:
            slot = next(s for s, out in ENCODER_SLOTS.items() if out == kind)
            raise ConfigError(
                f"model.{slot} is set but no fusion uses {kind!r} image features; add a fusion that does "
                f"(e.g. {'mag' if kind == 'global' else 'xattn'}) or remove model.{slot}."
            )

    @staticmethod
    def _build_encoder(slot: str, expected: str, spec: ComponentSpec, saved: Any) -> ImageEncoder:
        encoder: ImageEncoder = manager.create("image_encoders", spec.name, spec.options, saved=saved)
        if encoder.output != expected:
            raise ConfigError(
                f"model.{slot}: image encoder {spec.name!r} gives {encoder.output!r} features but this "
                f"slot needs {expected!r} ones (for the generic 'timm' encoder set pool: "
                f"{str(expected == 'global').lower()})."
            )
        return encoder

    def _build_fusion(self, position: int, spec: ComponentSpec) -> Fusion:
        cls = manager.get_component("fusions", spec.name).cls
        if cls.image_input not in self.feature_kinds:
            slot = next(s for s, out in ENCODER_SLOTS.items() if out == cls.image_input)
            raise ConfigError(
                f"model.fusions[{position}] {spec.name!r} needs {cls.image_input!r} image features: "
                f"set model.{slot}."
            )
        return manager.create("fusions", spec.name, spec.options, text_dim=self.generator.d_model,
                               image_dim=self.feature_dim(cls.image_input))

    @property
    def feature_kinds(self) -> set[str]:
        """The kinds of image features the model computes (``global`` / ``regional``)."""
        return set(self.encoders) | ({"global"} if self.shared_backbone else set())

    def feature_dim(self, kind: str) -> int:
        if kind == "global" and self.shared_backbone:
            return self.encoders["regional"].pooled_dim
        return self.encoders[kind].out_dim

    @property
    def uses_images(self) -> bool:
        return len(self.encoders) > 0

    def preprocessing(self) -> dict[str, dict[str, Any]]:
        """Per encoder (by the kind of features it gives), how images must be preprocessed for it."""
        return {kind: encoder.preprocessing() for kind, encoder in self.encoders.items()}

    # ----------------------------------------------------------------- compute
    def encode_images(self, images: ImagePixels) -> ImageFeatures:
        """Run each encoder once over the products that have an image; the others get zeros.

        When no product of the batch has an image, regional features are a single zero region: a
        fusion masks image-less rows out, so the region count cannot change any result.
        """
        return self.finish_features(self.fixed_features(images))

    @property
    def image_features_fixed(self) -> bool:
        """Whether training leaves :meth:`fixed_features` unchanged (every fixed weight frozen), so that
        a feature cache can hold them."""
        return self.uses_images and not any(t.requires_grad for encoder in self.encoders.values()
                                            for t in encoder.fixed_state_dict().values())

    def fixed_features(self, images: ImagePixels) -> ImageFeatures:
        """The part of :meth:`encode_images` that training does not change: each encoder's output, or, for
        an encoder that trains its tail, its trunk's map (kind ``<kind>_trunk``; :meth:`finish_features`
        runs the tails)."""
        has_image = images.has_image
        features = {}
        for kind, encoder in self.encoders.items():
            pixels = images.pixels[kind]
            names = (f"{kind}{TRUNK}",) if encoder.trains_tail else self._output_kinds(kind)
            if not bool(has_image.any()):
                features.update({name: pixels.new_zeros((pixels.size(0), *self._empty_shape(name)))
                                 for name in names})
                continue
            if encoder.trains_tail:
                outputs = (encoder.encode_trunk(pixels[has_image]),)
            else:
                outputs = encoder.encode_both(pixels[has_image]) if self.shared_backbone else (encoder(pixels[has_image]),)
            features.update(scattered(names, outputs, has_image))
        return ImageFeatures(features, has_image)

    def finish_features(self, fixed: ImageFeatures) -> ImageFeatures:
        """:meth:`fixed_features` made whole: each trunk map through its encoder's trained tail (with
        gradients when enabled); other kinds pass as they are (whole features are returned unchanged)."""
        has_image = fixed.has_image
        features = {kind: values for kind, values in fixed.features.items() if not kind.endswith(TRUNK)}
        for kind, encoder in self.encoders.items():
            if f"{kind}{TRUNK}" not in fixed.features:
                continue
            trunk, names = fixed.features[f"{kind}{TRUNK}"], self._output_kinds(kind)
            if not bool(has_image.any()):
                features.update({name: trunk.new_zeros((trunk.size(0), *self._empty_shape(name))) for name in names})
                continue
            rows = trunk[has_image]
            outputs = encoder.finish_both(rows) if self.shared_backbone else (encoder.finish(rows),)
            features.update(scattered(names, outputs, has_image))
        return ImageFeatures(features, has_image)

    def _output_kinds(self, kind: str) -> tuple[str, ...]:
        """The feature kinds encoder ``kind`` gives (both when the backbone is shared)."""
        return ("global", "regional") if self.shared_backbone else (kind,)

    def _empty_shape(self, name: str) -> tuple[int, ...]:
        """Feature shape of one image-less product: a zero vector, a single zero region, or a 1x1 trunk map."""
        if name.endswith(TRUNK):
            return (1, 1, 1)
        dim = self.feature_dim(name)
        return (dim,) if name == "global" else (1, dim)

    @property
    def per_product(self) -> bool:
        """Whether the context is encoded once per product (``model.context_encoding: per_product``)."""
        return self.config.context_encoding == "per_product"

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    images: ImageFeatures | None, image_rows: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder-side states after all fusions, and their attention mask (``attention_mask`` right-padded).
        ``images`` is per example; ``image_rows[b]`` (optional) names example ``b``'s image, so that
        examples of one product share their context's encoding (``per_product``; without it only
        image-less examples do)."""
        if images is None and (self.embedding_fusions or self.encoder_fusions):
            raise ValueError("this model fuses images: pass image features (ImageFeatures) for the batch")
        if self.per_product:
            shared, masks = self._encode_per_product(input_ids, attention_mask, images, image_rows)
            return shared.states[shared.rows], masks
        return self._encode_prompts(input_ids, attention_mask, images)

    def _encode_prompts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        images: ImageFeatures | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding, fusions and encoder over whole rows (the paper's layout; contexts when ``per_product``)."""
        hidden = self.generator.embed_prompt(input_ids)
        mask = attention_mask
        for fusion in self.embedding_fusions:
            out = fusion(hidden, mask, images.features[fusion.image_input], images.has_image)
            hidden, mask = out.hidden, out.attention_mask
        hidden = self.generator.encode(hidden, mask)
        for fusion in self.encoder_fusions:
            out = fusion(hidden, mask, images.features[fusion.image_input], images.has_image)
            hidden, mask = out.hidden, out.attention_mask
        return hidden, mask

    def _encode_per_product(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                            images: ImageFeatures | None, image_rows: torch.Tensor | None
                            ) -> tuple[SharedStates, torch.Tensor]:
        """``per_product`` encoding: the distinct states and how each row gathers them, and the rows' mask.
        Each row ``[question ; context ; padding]`` is split at its context marker; the distinct contexts (same
        tokens and same image) are encoded once with every fusion, the distinct questions once by the encoder
        alone (no image: a question does not depend on the product). Row ``b``'s states are ``[positions
        fusions put in front of its context ; its question ; its context ; zeros]`` with the matching mask, so
        the row's token ids still line up with the end of its states."""
        lengths = attention_mask.sum(dim=1).tolist()
        ids = [row[:length] for row, length in zip(input_ids.tolist(), lengths)]
        markers, _ = context_marker_positions(self.generator.tokenizer, ids)
        splits = [max(found, 0) for found in markers]  # no marker: the whole row is context
        image_keys = (image_rows.tolist() if image_rows is not None
                      else list(range(len(ids))) if images is not None else [None] * len(ids))
        contexts: dict[tuple, int] = {}
        questions: dict[tuple, int] = {}
        context_of, question_of = [], []
        for row, (split, key) in enumerate(zip(splits, image_keys)):
            context_of.append(contexts.setdefault((tuple(ids[row][split:]), key), len(contexts)))
            question_of.append(questions.setdefault(tuple(ids[row][:split]), len(questions)))
        device, pad = input_ids.device, self.generator.tokenizer.pad_token_id if self.generator.tokenizer else 0
        first_row = {index: row for row, index in reversed(list(enumerate(context_of)))}
        context_ids, context_mask = _padded([tokens for tokens, _ in contexts], pad, device)
        context_images = images.select(torch.tensor([first_row[i] for i in range(len(contexts))], device=device)) \
            if images is not None else None
        context_hidden, context_mask = self._encode_prompts(context_ids, context_mask, context_images)
        question_hidden = self._encode_questions(list(questions), pad, device, context_hidden.dtype)
        front = context_hidden.size(1) - context_ids.size(1)  # positions fusions put before the text
        return _join_states(question_hidden, context_hidden, context_mask, front,
                            torch.tensor(question_of, device=device), torch.tensor(context_of, device=device),
                            torch.tensor(splits, device=device), torch.tensor(lengths, device=device),
                            input_ids.size(1))

    def _encode_questions(self, questions: list[tuple[int, ...]], pad: int, device: torch.device,
                          dtype: torch.dtype) -> torch.Tensor:
        """Encoder states ``[Q, Lq, D]`` of the distinct questions (``Lq`` 0 when every question is empty)."""
        if not any(questions):
            return torch.zeros((len(questions), 0, self.generator.d_model), device=device, dtype=dtype)
        question_ids, question_mask = _padded(questions, pad, device)
        hidden = self.generator.encode(self.generator.embed_prompt(question_ids), question_mask)
        return hidden.to(dtype)

    def image_features(self, images: ImagePixels | ImageFeatures | None,
                       image_index: torch.Tensor | None) -> ImageFeatures | None:
        """Per-example image features: encode ``ImagePixels`` (or take precomputed ``ImageFeatures``)
        of P products, then pick row ``image_index[b]`` for example ``b`` (default: one row each)."""
        if images is None or not self.uses_images:
            return None
        features = self.encode_images(images) if isinstance(images, ImagePixels) else self.finish_features(images)
        return features if image_index is None else features.select(image_index)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                images: ImagePixels | ImageFeatures | None = None,
                image_index: torch.Tensor | None = None) -> torch.Tensor:
        """The generator's loss on ``labels`` (-100 ignored). See :meth:`image_features` for the images."""
        hidden, mask = self.encode_text(input_ids, attention_mask, self.image_features(images, image_index),
                                        image_index)
        return self.generator.loss(hidden, mask, labels, input_ids=input_ids)

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 images: ImagePixels | ImageFeatures | None, max_new_tokens: int,
                 image_index: torch.Tensor | None = None, encode_rows: int | None = None,
                 bound_rows: torch.Tensor | None = None, none_answer: str = "none") -> GreedyOutput:
        """Greedy answers with per-token log-probabilities (``bound_rows`` / ``none_answer``: see
        :meth:`Generator.greedy <mxt_sdk.plugins.components.Generator.greedy>`).

        With ``encode_rows`` the encoder side runs on groups of that many consecutive rows, each group cut
        to its own longest prompt (``attention_mask`` right-padded), and the decoder then runs on all rows
        at once: the same answers (to float rounding), but rows sorted by length carry less padding
        through the encoder (see :meth:`encode_text_in_groups`; on one CPU thread, 141 prompts encoded 16
        or 32 at a time took about 0.75x the time of one group of 128, benchmarks/HISTORY.md#serving-load-serve_loadpy).
        With ``context_encoding: per_product`` ``encode_rows`` is not used: the batch's distinct contexts are
        encoded together, and the generator gets the :class:`SharedStates` the rows gather."""
        features, options = self.image_features(images, image_index), {}
        if self.per_product:
            shared, mask = self._encode_per_product(input_ids, attention_mask, features, image_index)
            hidden, options["shared"] = shared.states[shared.rows], shared
        elif encode_rows is None or input_ids.size(0) <= encode_rows:
            hidden, mask = self.encode_text(input_ids, attention_mask, features)
        else:
            hidden, mask = self.encode_text_in_groups(input_ids, attention_mask, features, encode_rows)
        if bound_rows is not None:
            options.update(bound_rows=bound_rows, none_answer=none_answer)
        return self.generator.greedy(hidden, mask, max_new_tokens, input_ids=input_ids, **options)

    def answer_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        images: ImagePixels | ImageFeatures | None, labels: torch.Tensor, example: torch.Tensor,
                        image_index: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probability ``[R]`` of answer ``labels[r]`` for example ``example[r]`` (``R`` answers over
        ``B`` examples: each example's prompt is encoded once, whatever its number of candidate answers, and
        the generator gets the rows as :class:`SharedStates` of the examples' states, so the decoder's
        per-state projections run once per example, or once per product with ``per_product``)."""
        features = self.image_features(images, image_index)
        if self.per_product:
            shared, mask = self._encode_per_product(input_ids, attention_mask, features, image_index)
            shared = SharedStates(shared.states, shared.rows[example])
        else:
            hidden, mask = self.encode_text(input_ids, attention_mask, features)
            positions = torch.arange(hidden.size(1), device=hidden.device)
            shared = SharedStates(hidden.flatten(0, 1), example[:, None] * hidden.size(1) + positions)
        return self.generator.answer_logprobs(shared.states[shared.rows], mask[example], labels,
                                              input_ids=input_ids[example], shared=shared)

    def encode_text_in_groups(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                              images: ImageFeatures | None, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`encode_text` on ``rows`` rows at a time, each group without the padding columns that
        all its rows share (``attention_mask`` is right-padded); the groups' states are padded back on the
        right (zeros, mask 0) to the full width, so positions that fusions put in front of the text
        stay in front and the layout is that of one :meth:`encode_text` call."""
        width, hidden_parts, mask_parts = input_ids.size(1), [], []
        for start in range(0, input_ids.size(0), rows):
            index = torch.arange(start, min(start + rows, input_ids.size(0)), device=input_ids.device)
            columns = attention_mask[index].any(dim=0).nonzero()
            used = int(columns.max()) + 1 if columns.numel() else 1
            hidden, mask = self.encode_text(input_ids[index, :used], attention_mask[index, :used],
                                            images.select(index) if images is not None else None)
            hidden_parts.append(torch.nn.functional.pad(hidden, (0, 0, 0, width - used)))
            mask_parts.append(torch.nn.functional.pad(mask, (0, width - used)))
        return torch.cat(hidden_parts), torch.cat(mask_parts)

    def export_states(self) -> dict[str, Any]:
        """JSON-able state of each component slot, for :class:`MXTModel` ``saved=``."""
        states: dict[str, Any] = {"generator": self.generator.export_state()}
        for slot, kind in ENCODER_SLOTS.items():
            source = "regional" if kind == "global" and self.shared_backbone else kind
            if source in self.encoders:
                states[slot] = self.encoders[source].export_state()
        return states


def _padded(rows: list[tuple[int, ...]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~mxt_sdk.data.padding.pad_batch` of ``rows`` on ``device``."""
    ids, mask = pad_batch(rows, pad)
    return ids.to(device), mask.to(device)


def _join_states(question_hidden: torch.Tensor, context_hidden: torch.Tensor, context_mask: torch.Tensor,
                 front: int, question_of: torch.Tensor, context_of: torch.Tensor, splits: torch.Tensor,
                 lengths: torch.Tensor, width: int) -> tuple[SharedStates, torch.Tensor]:
    """Per row ``b``: ``front`` states of context ``context_of[b]``, then question ``question_of[b]``'s first
    ``splits[b]`` states, then the context's text states up to the row's ``lengths[b]``, then zeros (mask 0) to
    ``front + width`` positions: the stacked states with each row's gather, and the rows' mask."""
    rows, dim = question_of.size(0), context_hidden.size(-1)
    q_width, c_width = question_hidden.size(1), context_hidden.size(1)
    stacked = torch.cat([question_hidden.reshape(-1, dim), context_hidden.reshape(-1, dim),
                         context_hidden.new_zeros((1, dim))])
    masks = torch.cat([context_mask.new_ones(question_hidden.size(0) * q_width), context_mask.reshape(-1),
                       context_mask.new_zeros(1)])
    position = torch.arange(front + width, device=splits.device)[None].expand(rows, -1)
    text = position - front  # position within the row's token ids
    context_base = question_hidden.size(0) * q_width + context_of[:, None] * c_width
    source = torch.full_like(position, stacked.size(0) - 1)
    source = torch.where(position < front, context_base + position, source)
    in_question = (text >= 0) & (text < splits[:, None])
    source = torch.where(in_question, question_of[:, None] * q_width + text.clamp_min(0), source)
    in_context = (text >= splits[:, None]) & (text < lengths[:, None])
    source = torch.where(in_context, context_base + front + (text - splits[:, None]), source)
    return SharedStates(stacked, source), masks[source]


#: encoder options that shape what is made of a network's output, not the network itself
_OUTPUT_OPTIONS = frozenset({"pool", "grid"})


def _same_network(first: ComponentSpec | None, second: ComponentSpec | None) -> bool:
    """Whether two encoder specs name the same network with the same options, ``pool`` and ``grid``
    (what is made of the network's output) aside."""
    if first is None or second is None or first.name != second.name:
        return False
    return {k: v for k, v in first.options.items() if k not in _OUTPUT_OPTIONS} == \
        {k: v for k, v in second.options.items() if k not in _OUTPUT_OPTIONS}
