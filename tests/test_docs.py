"""The docs stay true to the code: every hook has a section with its exact signature, every built-in
configurable component (model parts, normalizers) and each of its options is on the configuration
page, config snippets validate, the tutorial shows the example package as it is, and relative links
point at something."""
from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import pluggy
import pytest
import yaml

from mxt_sdk.config import load_config
from mxt_sdk.plugins import hookspecs, manager

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKS_PAGE = DOCS / "hooks.md"
CONFIG_PAGE = DOCS / "configuration.md"
TUTORIAL_PAGE = DOCS / "tutorial-image-encoder.md"
EXAMPLE_PACKAGE = ROOT / "examples" / "mxt-example-encoder"
LINKED_PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "CONTRIBUTING.md"]
CONFIGURED_KINDS = ("image_encoders", "fusions", "generators", "normalizers")


# ----------------------------------------------------------------------------- markdown helpers
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def _split_fences(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(prose lines, [(info string, block text)]) with CommonMark fence rules: a block closes at a
    fence of the same character at least as long as the one that opened it."""
    prose, blocks = [], []
    opening, info, body = None, "", []
    for line in text.splitlines():
        match = _FENCE.match(line)
        if opening is None:
            if match:
                opening, info, body = match.group(1), match.group(2).strip(), []
            else:
                prose.append(line)
        elif match and match.group(1)[0] == opening[0] and len(match.group(1)) >= len(opening) \
                and not match.group(2).strip():
            blocks.append((info, "\n".join(body)))
            opening = None
        else:
            body.append(line)
    return prose, blocks


def _sections(text: str, level: int) -> dict[str, str]:
    """Heading text -> everything up to the next heading of the same or a higher level."""
    prose_marker = "#" * level + " "
    sections, current, lines = {}, None, []
    opening = None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if match and (opening is None or match.group(1)[0] == opening[0]):
            opening = None if opening is not None else match.group(1)
        is_heading = opening is None and re.match(r"^#{1,%d} " % level, line)
        if is_heading:
            if current is not None:
                sections[current] = "\n".join(lines)
            current = line[len(prose_marker):].strip() if line.startswith(prose_marker) else None
            lines = []
        elif current is not None:
            lines.append(line)
    if current is not None:
        sections[current] = "\n".join(lines)
    return sections


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    prose, _ = _split_fences(path.read_text(encoding="utf-8"))
    return {_slug(line.lstrip("#")) for line in prose if re.match(r"^#{1,6} ", line)}


# ----------------------------------------------------------------------------- hooks
def _hookspec_functions() -> dict[str, object]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    return {name: getattr(hookspecs, name) for name in dir(hookspecs)
            if name.startswith("mxt_") and pm.parse_hookspec_opts(hookspecs, name) is not None}


class _Source:
    """An annotation kept as written (``from __future__ import annotations`` makes them strings)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature_line(name: str, function) -> str:
    signature = inspect.signature(function)
    parameters = [p.replace(annotation=_Source(p.annotation)) if isinstance(p.annotation, str) else p
                  for p in signature.parameters.values()]
    returns = signature.return_annotation
    signature = signature.replace(parameters=parameters,
                                  return_annotation=_Source(returns) if isinstance(returns, str) else returns)
    return f"def {name}{signature}"


HOOKS = _hookspec_functions()


def test_hookspecs_are_found():
    assert "mxt_register_image_encoders" in HOOKS and len(HOOKS) >= 6


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_has_a_section_with_its_exact_signature(name):
    sections = _sections(HOOKS_PAGE.read_text(encoding="utf-8"), level=2)
    assert name in sections, f"docs/hooks.md has no '## {name}' section"
    expected = _signature_line(name, HOOKS[name])
    _, blocks = _split_fences(sections[name])
    code_lines = {line.strip() for info, block in blocks if info in ("python", "py", "")
                  for line in block.splitlines()}
    assert expected in code_lines, (
        f"the '## {name}' section of docs/hooks.md must show the signature in a code block:\n    {expected}")


def test_hooks_page_has_no_section_for_a_hook_that_does_not_exist():
    sections = _sections(HOOKS_PAGE.read_text(encoding="utf-8"), level=2)
    stale = sorted(title for title in sections if title.startswith("mxt_") and title not in HOOKS)
    assert not stale, f"docs/hooks.md documents hooks that mxt_sdk.plugins.hookspecs does not define: {stale}"


# ----------------------------------------------------------------------------- configuration page
def _built_in_configured_components():
    found = []
    for kind in CONFIGURED_KINDS:
        for info in manager.list_components(kind):
            distribution = manager.plugin_distribution(info.plugin)
            if distribution is not None and distribution[0] == "mxt-sdk":
                found.append(info)
    manager.reset()  # collected at import time; leave no state behind for the tests
    return found


BUILT_INS = _built_in_configured_components()


def test_built_in_components_are_found():
    assert {"t5", "mag", "xattn"} <= {info.name for info in BUILT_INS}


@pytest.mark.parametrize("info", BUILT_INS, ids=lambda info: f"{info.kind}:{info.name}")
def test_every_built_in_component_and_option_is_on_the_configuration_page(info):
    sections = _sections(CONFIG_PAGE.read_text(encoding="utf-8"), level=3)
    title = f"`{info.name}`"
    assert title in sections, f"docs/configuration.md has no '### {title}' section"
    missing = [field for field in info.cls.Options.model_fields if f"`{field}`" not in sections[title]]
    assert not missing, f"the '### {title}' section of docs/configuration.md does not mention {missing}"


@pytest.fixture
def example_plugin_registered(monkeypatch):
    """The tutorial's ``tiny_cnn`` registered in-process (straight from the source tree)."""
    if not any(i.name == "tiny_cnn" for i in manager.list_components("image_encoders")):
        monkeypatch.syspath_prepend(str(EXAMPLE_PACKAGE))
        import mxt_example_encoder

        manager.register_plugin(mxt_example_encoder, name="example_encoder")
    yield
    for module in [m for m in sys.modules if m.split(".")[0] == "mxt_example_encoder"]:
        del sys.modules[module]


def _config_snippets():
    for page in sorted(DOCS.glob("*.md")):
        _, blocks = _split_fences(page.read_text(encoding="utf-8"))
        for number, (info, block) in enumerate(blocks):
            # schema sketches with <placeholders> are not meant to validate
            if info in ("yaml", "yml") and "<" not in block:
                data = yaml.safe_load(block)
                if isinstance(data, dict) and "model" in data:
                    yield pytest.param(data, id=f"{page.name}-block{number}")


@pytest.mark.parametrize("data", list(_config_snippets()))
def test_config_snippets_in_the_docs_validate(data, example_plugin_registered):
    loaded = load_config(data)
    config = loaded.model
    kinds = [("generators", config.generator), ("image_encoders", config.global_encoder),
             ("image_encoders", config.regional_encoder), *(("fusions", spec) for spec in config.fusions),
             *(("normalizers", spec) for spec in loaded.training.normalizers)]
    for kind, spec in kinds:
        if spec is not None:
            manager.get_component(kind, spec.name).cls.parse_options(spec.options)


# ----------------------------------------------------------------------------- tutorial
def _example_files():
    return sorted(path for pattern in ("pyproject.toml", "README.md", "mxt_example_encoder/*.py")
                  for path in EXAMPLE_PACKAGE.glob(pattern))


def test_example_package_has_its_files():
    names = {path.relative_to(EXAMPLE_PACKAGE).as_posix() for path in _example_files()}
    assert {"pyproject.toml", "mxt_example_encoder/__init__.py", "mxt_example_encoder/encoder.py"} <= names


@pytest.mark.parametrize("path", _example_files(), ids=lambda p: p.relative_to(EXAMPLE_PACKAGE).as_posix())
def test_tutorial_shows_each_example_file_as_it_is(path):
    tutorial = TUTORIAL_PAGE.read_text(encoding="utf-8")
    assert path.read_text(encoding="utf-8").rstrip("\n") in tutorial, (
        f"docs/tutorial-image-encoder.md no longer shows {path.relative_to(ROOT)} verbatim; "
        "paste the current file into its code block")


# ----------------------------------------------------------------------------- links
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _relative_links(page: Path):
    prose, _ = _split_fences(page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", "\n".join(prose))  # links inside inline code are not links
    for target in _LINK.findall(text):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        yield target


def test_the_docs_have_links_to_check():
    assert sum(1 for page in LINKED_PAGES for _ in _relative_links(page)) >= 10


@pytest.mark.parametrize("page", LINKED_PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_at_existing_files_and_headings(page):
    broken = []
    for target in _relative_links(page):
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(f"{target} (no file {destination})")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{target} (no heading #{anchor} in {destination.name})")
    assert not broken, f"{page.relative_to(ROOT)} has broken links: {broken}"
