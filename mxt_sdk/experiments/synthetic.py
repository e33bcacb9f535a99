"""A seeded synthetic multimodal catalog, drawn with Pillow, for demos, tests and benchmarks.

Each product is a picture of its type's silhouette (t-shirt, dress, shoe, mug, backpack) painted in
its colour, with its pattern (stripes, dots, plain), sleeve length or heel height drawn in, plus a
title and description built from templates with brands, materials and filler. By design:

* ``material`` is only in the text; ``pattern``, ``sleeve_length`` and ``heel_height`` are only in
  the image (value-absent); ``color`` is in the text for about half of the products and always in
  the image;
* the test split holds colours and materials never used as training labels of their (product
  type, attribute) pair (zero-shot values): values training uses for other product types only
  ("silk" t-shirts), new combinations of known words ("dark blue" when training saw "dark red" and
  "blue"), and one new word ("teal"); new materials and "teal" are always written in the text, and
  a new colour made of known words is left out of the text on about a third of its products
  (:data:`PHOTO_ONLY_NEW_SHARE`): a value new to training that only the photo shows, which the
  evaluation report counts apart (its ``unseen_absent`` slice);
* ``brand`` is always the first word of the title; training draws from a pool of about a thousand
  made-up brand names (syllable strings, like a real catalog's long tail), and half of the test products carry a brand from a disjoint pool, never seen in training: a model
  can only get those right by copying them from the title.

``layout="brands_anywhere"`` draws a harder catalog for the same question (benchmarks/unseen_brands.py): a
dozen word-like training brands, each on about one product in twelve, so a model can answer every training
brand from memory and never needs to copy one; the brand sits anywhere in the title ("Glazed Porcelain Coffee
Mug from Harbor", "Women's Harbor Red Silk Dress", "Blue Canvas Backpack - Harbor") and is sometimes named
again in the description; the unseen test brands are other such words.

:func:`write_catalog` writes ``train.jsonl`` / ``test.jsonl`` in the SDK's product format and the
images beside them, so the catalog flows through the same readers as real data.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

BASE_COLORS = {
    "red": (215, 35, 35), "blue": (35, 70, 205), "green": (35, 150, 65), "yellow": (240, 205, 30),
    "pink": (240, 135, 185), "brown": (125, 75, 35), "grey": (130, 130, 130), "purple": (125, 45, 165),
}
SHADES = {"light": (255, 255, 255), "dark": (0, 0, 0)}


def _shade(base: str, shade: str) -> tuple[int, int, int]:
    return tuple(round(0.55 * c + 0.45 * t) for c, t in zip(BASE_COLORS[base], SHADES[shade]))


_ALL_COLORS = {**BASE_COLORS, **{f"{s} {b}": _shade(b, s) for s in SHADES for b in BASE_COLORS}}
# Zero-shot colours: new combinations of words that training uses, and one new word.
HELD_OUT_COLORS = {name: _ALL_COLORS[name] for name in ("dark blue", "light green", "dark pink", "light brown")}
HELD_OUT_COLORS["teal"] = (0, 128, 128)
TRAIN_COLORS = {name: rgb for name, rgb in _ALL_COLORS.items() if name not in HELD_OUT_COLORS}
_BASE_MATERIALS = {
    "t-shirt": ["cotton", "polyester", "jersey", "linen"], "dress": ["cotton", "silk", "chiffon", "polyester"],
    "shoe": ["leather", "suede", "canvas", "rubber"], "mug": ["ceramic", "porcelain", "stoneware", "glass"],
    "backpack": ["nylon", "canvas", "polyester", "leather"],
}
_MODIFIERS = {"t-shirt": "organic", "dress": "recycled", "shoe": "faux", "mug": "glazed", "backpack": "recycled"}
# Zero-shot materials: the modifier with a base it never goes with in training, or a new word.
# Zero-shot per (product type, attribute): a value training uses for other product types only.
TYPE_HELD_OUT_COLORS = {"t-shirt": "brown", "dress": "grey", "shoe": "pink", "mug": "purple", "backpack": "yellow"}
HELD_OUT_MATERIALS = {"t-shirt": ["organic jersey", "silk"], "dress": ["recycled silk", "linen"],
                      "shoe": ["faux suede", "nylon"], "mug": ["glazed porcelain", "rubber"],
                      "backpack": ["recycled canvas", "suede"]}
MATERIALS = {
    kind: [m for base in bases for m in (base, f"{_MODIFIERS[kind]} {base}") if m not in HELD_OUT_MATERIALS[kind]]
    for kind, bases in _BASE_MATERIALS.items()
}
PATTERNS = ["plain", "striped", "dotted"]
SLEEVES = ["short", "long", "sleeveless"]
HEELS = ["flat", "low", "high"]
BRANDS = ["Acme", "Northwind", "Bluebird", "Crestline", "Oakhaven", "Lumen", "Verano", "Kestrel"]
_SYLLABLES = ["ka", "ro", "li", "ven", "tor", "mi", "sa", "zel", "dor", "qui", "bra", "nox", "fe", "lu",
              "gar", "pim", "ost", "rah", "bel", "cy"]


def _brand_pool(seed: int, count: int) -> list[str]:
    """``count`` distinct made-up brand names of two or three syllables."""
    rng, names = random.Random(seed), set()
    while len(names) < count:
        names.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 3)))).title())
    return sorted(names)


# About a thousand training brands, as a real catalog has: most appear once or twice in training, so
# a model learns to copy the brand from the title rather than to memorise a short list of names.
_POOL = _brand_pool(2024, 2100)
TRAIN_BRANDS = [*BRANDS, *_POOL[::2][:1000]]
HELD_OUT_BRANDS = [b for b in _POOL[1::2] if b not in TRAIN_BRANDS][:40]
# layout "brands_anywhere": few word-like brands in training, other such words never seen in training at test
WORD_BRANDS = ["Harbor", "Summit", "Meadow", "Cobalt", "Granite", "Willow", "Falcon", "Aspen", "Beacon", "Cedar",
               "Maple", "Orchard"]
HELD_OUT_WORD_BRANDS = ["Ironwood", "Juniper", "Larkspur", "Everly", "Thistle", "Bramble", "Copperfield", "Marlow",
                        "Wrenfield", "Ashby", "Hollis", "Sparrowhill", "Fernly", "Ravenna", "Stonebrook", "Calloway",
                        "Bexley", "Tamsin", "Oakridge", "Linden"]
LAYOUTS = ("demo", "brands_anywhere")
FILLERS = ["Machine washable.", "Imported.", "Ships in 2 days.", "Gift ready packaging.",
           "Easy returns.", "Designed in Portugal.", "Everyday essential.", "Limited edition."]
NOUNS = {"t-shirt": "T-Shirt", "dress": "Dress", "shoe": "Pump", "mug": "Coffee Mug", "backpack": "Backpack"}
IMAGE_ONLY = {"pattern", "sleeve_length", "heel_height"}
# Of the test products whose colour is new to their pair and made of words training uses (not "teal", which
# no model could spell from a photo), the share whose text leaves the colour out: only the photo shows it.
PHOTO_ONLY_NEW_SHARE = 0.35


@dataclass
class SyntheticItem:
    product: dict
    color_rgb: tuple[int, int, int]


def _attributes(kind: str, rng: random.Random, held_out: bool) -> dict[str, str]:
    own = TYPE_HELD_OUT_COLORS[kind]
    if held_out and rng.random() < 0.5:
        colors = [*HELD_OUT_COLORS, own]
    else:
        colors = [c for c in TRAIN_COLORS if c != own]
    materials = HELD_OUT_MATERIALS[kind] if held_out and rng.random() < 0.5 else MATERIALS[kind]
    values = {"color": rng.choice(sorted(colors)), "material": rng.choice(sorted(materials))}
    if kind != "shoe":
        values["pattern"] = rng.choice(PATTERNS)
    if kind in ("t-shirt", "dress"):
        values["sleeve_length"] = rng.choice(SLEEVES)
    if kind == "shoe":
        values["heel_height"] = rng.choice(HEELS)
    return values


def _text(kind: str, values: dict[str, str], rng: random.Random, color_in_text: bool,
          layout: str = "demo") -> tuple[str, str]:
    brand = values["brand"]
    audience = rng.choice(["Women's", "Men's", "Unisex", ""])
    color = values["color"].title() if color_in_text else ""
    if layout == "demo":
        title = " ".join(w for w in [brand, audience, color, values["material"].title(), NOUNS[kind]] if w)
        return title, " ".join(rng.sample(FILLERS, k=rng.randint(1, 3)))
    material = values["material"] if rng.random() < 0.5 else values["material"].title()
    rest = [audience, color, material, NOUNS[kind]]
    place = rng.randrange(5)
    if place == 0:
        words = [brand, *rest]
    elif place == 1:
        words = [audience, brand, color, material, NOUNS[kind]]
    else:
        words = [*rest, ["from", "by", "-"][place - 2], brand]
    fillers = rng.sample(FILLERS, k=rng.randint(1, 2))
    if rng.random() < 0.3:
        fillers.insert(rng.randrange(len(fillers) + 1), f"Made by {brand}.")
    return " ".join(w for w in words if w), " ".join(fillers)


def _draw(kind: str, values: dict[str, str], rgb: tuple[int, int, int], size: int) -> Image.Image:
    """The product's picture: silhouette in its colour, pattern overlay, shape details."""
    image = Image.new("RGB", (size, size), (236, 236, 236))
    mask = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(mask)
    s = size / 96
    box = lambda *xy: [round(v * s) for v in xy]  # noqa: E731  (coordinates on a 96-pixel grid)
    if kind in ("t-shirt", "dress"):
        bottom = 88 if kind == "dress" else 78
        pen.polygon(box(34, 14, 62, 14, 66, 30, 68, bottom, 28, bottom, 30, 30), fill=255)
        if kind == "dress":
            pen.polygon(box(30, 50, 66, 50, 80, 90, 16, 90), fill=255)
        sleeve = values["sleeve_length"]
        if sleeve != "sleeveless":
            reach = 28 if sleeve == "short" else 62
            pen.polygon(box(34, 14, 14, reach * 0.6 + 12, 22, reach * 0.6 + 16, 32, 30), fill=255)
            pen.polygon(box(62, 14, 82, reach * 0.6 + 12, 74, reach * 0.6 + 16, 64, 30), fill=255)
    elif kind == "shoe":
        heel = {"flat": 4, "low": 16, "high": 34}[values["heel_height"]]
        pen.polygon(box(12, 74 - heel, 30, 60 - heel, 52, 62 - heel * 0.5, 84, 70, 84, 80, 12, 80), fill=255)
        pen.rectangle(box(12, 80 - heel - 4, 20, 84), fill=255)
    elif kind == "mug":
        pen.rectangle(box(24, 22, 64, 82), fill=255)
        pen.ellipse(box(58, 36, 82, 66), fill=255)
        pen.ellipse(box(64, 42, 76, 60), fill=0)
    else:  # backpack
        pen.rounded_rectangle(box(22, 16, 74, 86), radius=round(14 * s), fill=255)
        pen.arc(box(34, 4, 62, 30), 180, 360, fill=255, width=max(1, round(4 * s)))
    fill = Image.new("RGB", (size, size), rgb)
    pattern = values.get("pattern", "plain")
    if pattern != "plain":
        overlay = ImageDraw.Draw(fill)
        contrast = (250, 250, 250) if sum(rgb) < 450 else (20, 20, 20)
        step = max(4, round(12 * s))
        for offset in range(0, size, step):
            if pattern == "striped":
                overlay.rectangle([0, offset, size, offset + step // 3], fill=contrast)
            else:
                for x in range(step // 2, size, step):
                    r = max(1, step // 5)
                    overlay.ellipse([x - r, offset + step // 2 - r, x + r, offset + step // 2 + r], fill=contrast)
    image.paste(fill, mask=mask)
    return image


def generate(count: int, seed: int = 0, held_out: bool = False, layout: str = "demo") -> list[SyntheticItem]:
    """``count`` products (no images drawn yet); ``held_out`` mixes in zero-shot colours/materials and
    unseen brands; ``layout``: one of :data:`LAYOUTS` (see the module docstring)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    train_brands, unseen_brands = ((TRAIN_BRANDS, HELD_OUT_BRANDS) if layout == "demo"
                                   else (WORD_BRANDS, HELD_OUT_WORD_BRANDS))
    rng = random.Random(seed)
    brand_rng = random.Random(f"brands:{seed}")  # its own stream: the other values do not depend on it
    photo_rng = random.Random(f"photo-only:{seed}")  # its own stream too: adding it moved no other value
    items = []
    kinds = sorted(NOUNS)
    for index in range(count):
        kind = kinds[index % len(kinds)]
        values = _attributes(kind, rng, held_out)
        unseen_brand = held_out and brand_rng.random() < 0.5
        values["brand"] = brand_rng.choice(unseen_brands if unseen_brand else train_brands)
        new_colour = values["color"] in (*HELD_OUT_COLORS, TYPE_HELD_OUT_COLORS[kind])
        color_in_text = new_colour or values["material"] in HELD_OUT_MATERIALS[kind] or rng.random() < 0.5
        if new_colour and values["color"] != "teal" and photo_rng.random() < PHOTO_ONLY_NEW_SHARE:
            color_in_text = False
        title, description = _text(kind, values, rng, color_in_text, layout)
        rgb = {**_ALL_COLORS, **HELD_OUT_COLORS}[values["color"]]
        product = {"id": f"{'test' if held_out else 'train'}-{index:05d}", "product_type": kind,
                   "title": title, "description": description, "attributes": values}
        items.append(SyntheticItem(product, rgb))
    return items


def write_catalog(folder: str | Path, train_size: int = 2000, test_size: int = 400, seed: int = 0,
                  image_size: int = 96, layout: str = "demo") -> dict[str, Path]:
    """Write ``train.jsonl``, ``test.jsonl`` and ``images/`` under ``folder``; return their paths.
    ``layout``: see :func:`generate`."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, size, split_seed in (("train", train_size, seed), ("test", test_size, seed + 1)):
        path = folder / f"{split}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for item in generate(size, split_seed, held_out=split == "test", layout=layout):
                name = f"images/{item.product['id']}.png"
                _draw(item.product["product_type"], item.product["attributes"], item.color_rgb,
                      image_size).save(folder / name)
                handle.write(json.dumps({**item.product, "image": name}) + "\n")
        paths[split] = path
    paths["images"] = folder / "images"
    return paths
