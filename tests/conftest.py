"""Shared fixtures. Tests are hermetic: whatever the caller's environment, locale and current folder,
every test (and every process it starts, which inherits ``os.environ``) sees the same known
environment, set here before anything imports ``huggingface_hub``, ``transformers`` or ``tqdm`` (they
read theirs at import). Tests never touch the network: the hub is forced offline, its caches point
at a fresh folder of this session. A test that needs a variable sets it itself with ``monkeypatch``."""
from __future__ import annotations

import atexit
import locale
import os
import shutil
import tempfile

# Dropped from the caller's environment: bar and colour switches, this package's own switches
# (MXT_DISABLE_PLUGINS, MXT_CRASH_AT, ...), every Hugging Face cache, offline, token and verbosity
# setting, and locale and text-encoding choices.
_DROPPED_PREFIXES = ("MXT_", "TQDM_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "DATASETS_", "LC_")
_DROPPED = {"NO_COLOR", "FORCE_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "PY_COLORS", "PYTHON_COLORS",
            "LANG", "LANGUAGE", "LOCPATH", "PYTHONIOENCODING", "PYTHONUTF8", "TOKENIZERS_PARALLELISM"}


def _utf8_locale() -> str | None:
    for name in ("C.UTF-8", "C.utf8", "en_US.UTF-8", "en_US.utf8"):
        try:
            locale.setlocale(locale.LC_ALL, name)
        except locale.Error:
            continue
        return name
    return None


def _hermetic_environment() -> None:
    for name in [name for name in os.environ if name.startswith(_DROPPED_PREFIXES) or name in _DROPPED]:
        del os.environ[name]
    hf_home = tempfile.mkdtemp(prefix="mxt-tests-hf-")
    atexit.register(shutil.rmtree, hf_home, ignore_errors=True)
    os.environ.update({
        "HF_HOME": hf_home,
        "HF_HUB_CACHE": os.path.join(hf_home, "hub"),
        "HF_DATASETS_CACHE": os.path.join(hf_home, "datasets"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUTF8": "1",  # for the Python processes tests start; this one's encoding is fixed at its start
    })
    # TRANSFORMERS_CACHE and TRANSFORMERS_OFFLINE are left unset, not pointed here: transformers 4.x
    # warns (FutureWarning, an error under pyproject's filterwarnings) when TRANSFORMERS_CACHE is set;
    # both follow HF_HUB_CACHE / HF_HUB_OFFLINE.
    name = _utf8_locale()  # UTF-8 text, C number and date formats: here and in the processes tests start
    if name:
        os.environ["LC_ALL"] = os.environ["LANG"] = name


_hermetic_environment()

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _known_environment():
    """What a test or the code under test sets in ``os.environ`` without ``monkeypatch`` (the CLI sets
    TRANSFORMERS_VERBOSITY, for one) is undone after it, so that no test sees another's variables."""
    before = {name: value for name, value in os.environ.items() if name != "PYTEST_CURRENT_TEST"}
    yield
    for name in [name for name in os.environ if name not in before and name != "PYTEST_CURRENT_TEST"]:
        del os.environ[name]
    for name, value in before.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch):
    """Every test starts from the installed plugins with nothing blocked, and leaves no trace."""
    from mxt_sdk.plugins import manager

    monkeypatch.delenv("MXT_DISABLE_PLUGINS", raising=False)
    manager.reset()
    yield
    manager.reset()


TINY_T5 = {"name": "t5", "options": {"tokenizer": "byte", "d_model": 32, "d_ff": 64, "num_layers": 2,
                                     "num_heads": 4, "dropout_rate": 0.0}}
TINY_GLOBAL = {"name": "timm", "options": {"model_name": "test_resnet", "image_size": 64, "pool": True}}
TINY_REGIONAL = {"name": "timm", "options": {"model_name": "test_resnet", "image_size": 64, "pool": False}}
FUSION_OPTIONS = {"mag": {"dropout": 0.0}, "xattn": {"heads": 4, "dropout": 0.0}, "concat": {}}


def tiny_config(fusions: list[str]) -> dict:
    """A seconds-to-build model config with the given fusions and just the encoders they need."""
    model = {"generator": TINY_T5, "max_answer_tokens": 6,
             "fusions": [{"name": f, "options": FUSION_OPTIONS[f]} for f in fusions]}
    if {"mag", "concat"} & set(fusions):
        model["global_encoder"] = TINY_GLOBAL
    if "xattn" in fusions:
        model["regional_encoder"] = TINY_REGIONAL
    return {"model": model}


@pytest.fixture
def image_dir(tmp_path):
    """A folder of real image files: JPEG and PNG of different sizes and modes."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (320, 200), (220, 20, 20)).save(folder / "red.jpg")
    Image.new("RGB", (90, 160), (20, 20, 220)).save(folder / "blue.png")
    Image.new("RGBA", (64, 64), (20, 200, 20, 120)).save(folder / "green.png")
    Image.new("CMYK", (100, 80), (0, 0, 255, 0)).save(folder / "yellow_cmyk.jpg")
    return folder


@pytest.fixture
def products():
    """Products with and without images (paths relative to ``image_dir``)."""
    from mxt_sdk import Product

    return [
        Product(id="p1", product_type="dress", title="Calvin Klein red printed dress",
                description="Sleeveless sheath", bullets=["100% cotton"], image="red.jpg"),
        Product(id="p2", product_type="mug", title="Ceramic coffee mug 300 ml", image="blue.png"),
        Product(id="p3", product_type="mug", title="Travel mug without a photo"),
        Product(id="p4", product_type="shoe", title="Leather pump with 3 inch heel", image="green.png"),
        Product(id="p5", product_type="dress", title="Maxi dress", image="yellow_cmyk.jpg"),
    ]


def script_answers(monkeypatch, answers: dict) -> None:
    """Replace the model's greedy generation with scripted answers: the prompt asking ``attribute``
    of the product titled ``title`` gets ``answers[(title, attribute)] = (text, confidence, ends)``;
    ``ends=False`` leaves out the EOS, as when generation stops at the token limit."""
    import math

    from mxt_sdk import GreedyOutput
    from mxt_sdk.model.mxt import MXTModel

    def generate(self, input_ids, attention_mask, images, max_new_tokens, image_index=None, encode_rows=None):
        tokenizer = self.generator.tokenizer
        rows = []
        for prompt in tokenizer.batch_decode(input_ids.tolist(), skip_special_tokens=True):
            text, confidence, ends = next(answer for (title, attribute), answer in answers.items()
                                          if f"question: {attribute} " in prompt and title in prompt)
            rows.append((tokenizer(text, add_special_tokens=ends)["input_ids"], confidence))
        token_ids = torch.full((len(rows), max(len(ids) for ids, _ in rows)), tokenizer.pad_token_id)
        logprobs = torch.zeros(token_ids.shape)
        for row, (ids, confidence) in enumerate(rows):
            token_ids[row, :len(ids)] = torch.tensor(ids)
            logprobs[row, 0] = math.log(confidence)
        return GreedyOutput(token_ids, logprobs)

    monkeypatch.setattr(MXTModel, "generate", generate)


def kill_after_first_checkpoint(command: list[str], output, timeout: float = 120) -> int:
    """Start ``command`` (an ``mxt`` run writing to ``output``), SIGKILL it and its children once a
    complete checkpoint exists, and return the step of the latest complete one once the kill's
    leftovers are recovered (a newer checkpoint killed between its last write and its rename is
    complete and is put in place, as the re-run's crash recovery does)."""
    import signal
    import subprocess
    import time

    from mxt_sdk.training.checkpoints import complete_checkpoints, recover_run_folder

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while not complete_checkpoints(output) and time.time() < deadline:
            time.sleep(0.2)
        assert complete_checkpoints(output), "no checkpoint was written in time"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    recover_run_folder(output)
    return int(complete_checkpoints(output)[-1].name.split("-")[1])
