"""The model card: ``README.md`` in the Hugging Face Hub's model-card format, and ``card.json``, the facts
it is rendered from.

Every save of a model folder writes both. ``card.json`` holds what the folder's other files do not
say: how the model was trained (steps, seed, the data's names and fingerprint) and the latest figures
of :meth:`~mxt_sdk.Extractor.evaluate` and :meth:`~mxt_sdk.Extractor.calibrate` with the data they were
measured on. ``README.md`` opens with YAML metadata (library name, tags, datasets, metrics and a
``model-index`` of the latest evaluation) and then describes the model for people. Neither file is
read by extraction; :mod:`mxt_sdk.model.checksums` leaves them out, so updating the card after an
evaluation touches nothing else (:func:`update_card`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mxt_sdk._version import __version__
from mxt_sdk.config import MXTConfig
from mxt_sdk.data.metadata import CatalogMetadata
from mxt_sdk.model.mxt import ENCODER_SLOTS
from mxt_sdk.storage import file_sha256, read_json, write_json, write_text

CARD_FILE, FACTS_FILE = "README.md", "card.json"
LIBRARY_NAME = "mxt-sdk"
TAGS = ["mxt-sdk", "attribute-value-extraction", "product-attributes", "multimodal", "t5"]
#: what-it-extracts rows shown in the card (the rest are counted)
MAX_LISTED_TYPES = 40


class DataRef(BaseModel):
    """A data set named by the user: its file name (``None`` for products given in memory) and a
    fingerprint of its content (a file's SHA-256, or the staged products' digest in training)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    fingerprint: str | None = None
    products: int | None = None


class TrainingFacts(BaseModel):
    """How the weights were made."""

    model_config = ConfigDict(extra="forbid")

    steps: int
    seed: int
    train: DataRef
    val: DataRef | None = None
    data_fingerprint: str
    best_val_loss: float | None = None
    mxt_sdk_version: str = __version__


class MeasuredFacts(BaseModel):
    """The figures of one ``evaluate`` or ``calibrate`` run and the data they come from."""

    model_config = ConfigDict(extra="forbid")

    data: DataRef
    target_precision: float
    figures: dict[str, float | int | None] = Field(default_factory=dict)


class ModelCard(BaseModel):
    """The facts of ``card.json`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    training: TrainingFacts | None = None
    evaluation: MeasuredFacts | None = None
    calibration: MeasuredFacts | None = None

    @classmethod
    def load(cls, folder: Path) -> "ModelCard":
        """The card facts of a model folder; an empty card when it has none (folders saved before cards)."""
        path = Path(folder) / FACTS_FILE
        return cls.model_validate(read_json(path)) if path.is_file() else cls()


def data_ref(data: Any, products: int | None = None) -> DataRef:
    """A :class:`DataRef` for ``data`` as given to ``fit`` / ``evaluate`` / ``calibrate``: a file is named
    and hashed; products given in memory have no name."""
    if isinstance(data, (str, Path)) and Path(data).is_file():
        return DataRef(name=Path(data).name, fingerprint=f"sha256:{file_sha256(Path(data))}", products=products)
    return DataRef(products=products)


def evaluation_figures(report: dict[str, Any]) -> dict[str, float | int | None]:
    """The headline figures of an evaluation report (:func:`~mxt_sdk.evaluation.report.build_report`)."""
    slices = report.get("slices", {})
    return {
        "micro_precision": report["micro"]["precision"], "micro_recall": report["micro"]["recall"],
        "micro_f1": report["micro"]["f1"], "macro_f1": report["macro"]["f1"],
        "macro_recall_at_precision": report["macro"]["recall_at_p"], "pairs": report["macro"]["pairs"],
        "rows": report["rows"], "errors": report["errors"],
        "zero_shot_accuracy": slices.get("zero_shot", {}).get("accuracy"),
        "value_absent_accuracy": slices.get("value_absent", {}).get("accuracy"),
    }


def calibration_figures(summary: dict[str, Any]) -> dict[str, float | int | None]:
    """The headline figures of a calibration (:func:`~mxt_sdk.evaluation.thresholds.calibration_summary`)."""
    return {"pairs": summary["pairs"], "reached": summary["reached"], "own_threshold": summary["own_threshold"],
            "unreachable": len(summary["unreachable_accept_nothing"]),
            **{setting: summary[setting] for setting in ("image_prior_weight", "text_prior_weight") if setting in summary}}


def _metadata_block(card: ModelCard) -> dict[str, Any]:
    block: dict[str, Any] = {"library_name": LIBRARY_NAME, "tags": list(TAGS)}
    datasets = [ref.name for ref in (card.training.train if card.training else None,
                                      card.training.val if card.training else None,
                                      card.evaluation.data if card.evaluation else None) if ref and ref.name]
    if datasets:
        block["datasets"] = list(dict.fromkeys(datasets))
    block["metrics"] = ["precision", "recall", "f1"]
    if card.evaluation is not None:
        figures, data = card.evaluation.figures, card.evaluation.data
        block["model-index"] = [{"name": "mxt", "results": [{
            "task": {"type": "attribute-value-extraction", "name": "Product attribute-value extraction"},
            "dataset": {"type": data.name or "in-memory products", "name": data.name or "in-memory products"},
            "metrics": [{"type": name, "value": round(float(figures[key]), 4), "name": label}
                        for key, name, label in (("micro_f1", "f1", "micro F1"),
                                                 ("micro_precision", "precision", "micro precision"),
                                                 ("micro_recall", "recall", "micro recall"),
                                                 ("macro_recall_at_precision", "recall",
                                                  f"macro recall at {card.evaluation.target_precision:.0%} precision"))
                        if figures.get(key) is not None]}]}]
    return block


def _components(config: MXTConfig) -> list[str]:
    model = config.model
    lines = [f"- generator: `{model.generator.name}`"]
    for slot, kind in ENCODER_SLOTS.items():
        spec = getattr(model, slot)
        if spec is not None:
            lines.append(f"- {kind} image encoder: `{spec.name}`")
    fusions = ", ".join(f"`{spec.name}`" for spec in model.fusions) or "none (text only)"
    lines.append(f"- fusions: {fusions}")
    return lines


def _what_it_extracts(metadata: CatalogMetadata | None) -> list[str]:
    if metadata is None or not metadata.values:
        return ["No catalog metadata: this model has not been trained yet."]
    by_type: dict[str, list[str]] = {}
    for key in metadata.values:
        product_type, attribute = key.split("\t", 1)
        by_type.setdefault(product_type, []).append(attribute)
    lines = [f"{len(metadata.values)} (product type, attribute) pairs over {len(by_type)} product types:", "",
             "| product type | attributes |", "|---|---|"]
    for product_type in sorted(by_type)[:MAX_LISTED_TYPES]:
        lines.append(f"| {_cell(product_type)} | {_cell(', '.join(sorted(by_type[product_type])))} |")
    if len(by_type) > MAX_LISTED_TYPES:
        lines.append(f"| ... | {len(by_type) - MAX_LISTED_TYPES} more product types in metadata.json |")
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _measured(title: str, facts: MeasuredFacts | None, command: str) -> list[str]:
    if facts is None:
        return [f"## {title}", "", f"Not measured yet: run `{command}`."]
    lines = [f"## {title}", "", f"On {_describe(facts.data)}, target precision {facts.target_precision:g}:", "",
             "| figure | value |", "|---|---|"]
    for name, value in facts.figures.items():
        shown = "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
        lines.append(f"| {name.replace('_', ' ')} | {shown} |")
    return lines


def render_card(card: ModelCard, config: MXTConfig, metadata: CatalogMetadata | None) -> str:
    """The ``README.md`` text of a model folder."""
    header = yaml.safe_dump(_metadata_block(card), sort_keys=False, allow_unicode=True).strip()
    training = card.training
    if training is None:
        trained = ["Not trained with `mxt train` / `Extractor.fit` (weights as built from the config)."]
    else:
        trained = [f"- steps: {training.steps}", f"- seed: {training.seed}",
                   f"- training data: {_describe(training.train)}",
                   f"- validation data: {_describe(training.val) if training.val else 'none'}",
                   f"- data fingerprint: `{training.data_fingerprint}`",
                   f"- best validation loss: {training.best_val_loss:.4f}" if training.best_val_loss is not None
                   else "- best validation loss: not measured",
                   f"- mxt_sdk version: {training.mxt_sdk_version}"]
    lines = [
        "---", header, "---", "",
        "# MXT attribute-value extractor", "",
        "A multimodal generative extractor of product attribute values trained with "
        "[mxt_sdk](https://pypi.org/project/mxt-sdk/): the attribute is asked as a question about the product "
        "type and text (and photo, when the model has image encoders), and a T5 generator writes the value.", "",
        "## What it extracts", "", *_what_it_extracts(metadata), "",
        "## Configuration", "", *_components(config),
        f"- input cut to {config.model.max_input_tokens} tokens; the whole configuration is in `config.json`", "",
        "## Training", "", *trained, "",
        *_measured("Evaluation", card.evaluation, "mxt evaluate --model MODEL --data test.jsonl --output report.json"), "",
        *_measured("Calibration", card.calibration, "mxt calibrate --model MODEL --data val.jsonl"), "",
        "## Use", "", "```python", "from mxt_sdk import Extractor", "",
        'extractor = Extractor.from_pretrained("MODEL")  # a folder, or a Hub ID such as "org/name"',
        'predictions = extractor([{"product_type": "dress", "title": "Red floral midi dress"}], attributes=["color"])',
        "```", "",
        "`checksums.json` lists the SHA-256 of every file extraction reads; loading from the Hub checks them.", "",
    ]
    return "\n".join(lines)


def _describe(ref: DataRef) -> str:
    name = f"`{ref.name}`" if ref.name else "products given in memory"
    count = f", {ref.products} products" if ref.products is not None else ""
    return f"{name}{count}" + (f" ({ref.fingerprint})" if ref.fingerprint else "")


def write_card(folder: Path, card: ModelCard, config: MXTConfig, metadata: CatalogMetadata | None) -> None:
    """Write ``card.json`` and ``README.md`` into ``folder`` (each atomically)."""
    folder = Path(folder)
    write_json(folder / FACTS_FILE, card.model_dump(mode="json"))
    write_text(folder / CARD_FILE, render_card(card, config, metadata))


__all__ = ["ModelCard", "TrainingFacts", "MeasuredFacts", "DataRef", "data_ref", "render_card", "write_card",
           "evaluation_figures", "calibration_figures", "CARD_FILE", "FACTS_FILE"]
