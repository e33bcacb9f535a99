import json
import os
import subprocess
import sys
import types

import pytest
from click.testing import CliRunner

from mxt_sdk import ComponentOptions, Normalizer, hookimpl
from mxt_sdk.cli import main
from mxt_sdk.errors import DuplicateComponentError, PluginError, UnknownComponentError
from mxt_sdk.plugins import manager

BUILT_INS = {
    "image_encoders": {"timm", "resnet152", "xception"},
    "fusions": {"mag", "xattn", "concat"},
    "generators": {"t5", "span", "classify"},
}


class _Upper(Normalizer):
    name = "upper"
    constructed = 0

    def __init__(self, options):
        type(self).constructed += 1
        super().__init__(options)

    def __call__(self, value, *, product_type, attribute):
        return value.upper()


def _plugin_registering(hook: str, cls):
    """A plugin object whose registration hook ``hook`` registers ``cls``."""

    def register_classes(register):
        register(cls)

    register_classes.__name__ = hook
    return types.SimpleNamespace(**{hook: hookimpl(register_classes)})


def _normalizer_plugin(cls):
    return _plugin_registering("mxt_register_normalizers", cls)


def _fusion_plugin(cls):
    return _plugin_registering("mxt_register_fusions", cls)


def test_built_in_plugins_arrive_through_entry_points():
    pm = manager.get_plugin_manager()
    distinfo = {pm.get_name(p) for p, _ in pm.list_plugin_distinfo()}
    assert {"timm", "fusions", "t5"} <= distinfo
    for kind, names in BUILT_INS.items():
        assert names <= {i.name for i in manager.list_components(kind)}


def test_list_with_pattern_and_alias_lookup():
    assert manager.list_fusions("x*") == ["xattn"]
    assert manager.get_component("fusions", "cross_attention").name == "xattn"


def test_registering_does_not_instantiate():
    _Upper.constructed = 0
    manager.register_plugin(_normalizer_plugin(_Upper), "upper-plugin")
    assert "upper" in manager.list_normalizers()
    assert _Upper.constructed == 0
    normalizer = manager.create("normalizers", "upper")
    assert _Upper.constructed == 1
    assert normalizer("red", product_type="t", attribute="a") == "RED"


def test_duplicate_name_error_names_both_plugins():
    class Other(_Upper):
        name = "upper"

    manager.register_plugin(_normalizer_plugin(_Upper), "first-plugin")
    manager.register_plugin(_normalizer_plugin(Other), "second-plugin")
    with pytest.raises(DuplicateComponentError) as info:
        manager.list_normalizers()
    assert "first-plugin" in str(info.value) and "second-plugin" in str(info.value)


def test_registering_a_class_of_the_wrong_kind_is_an_error():
    manager.register_plugin(_fusion_plugin(_Upper), "wrong-kind-plugin")
    with pytest.raises(PluginError, match="wrong-kind-plugin.*not a subclass of mxt_sdk.Fusion"):
        manager.list_fusions()


def test_alias_clashing_with_a_built_in_names_both_plugins():
    from mxt_fusions.concat import ConcatFusion

    class Clash(ConcatFusion):
        name = "concat2"
        aliases = ("mag",)

    manager.register_plugin(_fusion_plugin(Clash), "clash-plugin")
    with pytest.raises(DuplicateComponentError, match="fusion name 'mag'") as info:
        manager.list_fusions()
    assert "'fusions'" in str(info.value) and "'clash-plugin'" in str(info.value)


def test_unknown_name_suggests_closest_and_lists_available():
    with pytest.raises(UnknownComponentError) as info:
        manager.get_component("fusions", "magg")
    message = str(info.value)
    assert "Did you mean 'mag'?" in message
    assert "concat" in message and "xattn" in message


def test_unknown_options_are_rejected_with_allowed_list():
    from mxt_sdk.errors import ConfigError

    with pytest.raises(ConfigError, match="beta"):
        manager.create("fusions", "mag", {"bta": 2.0}, text_dim=8, image_dim=8)


def test_misspelled_hook_is_caught():
    plugin = types.SimpleNamespace()

    @hookimpl
    def mxt_register_fusion(register):  # missing the final "s"
        pass

    plugin.mxt_register_fusion = mxt_register_fusion
    with pytest.raises(Exception, match="mxt_register_fusion"):
        manager.register_plugin(plugin, "typo-plugin")


def test_disable_env_blocks_entry_point_plugins(monkeypatch):
    monkeypatch.setenv("MXT_DISABLE_PLUGINS", "fusions, t5, baselines")
    manager.reset()
    assert manager.list_fusions() == []
    assert manager.list_generators() == []
    assert "timm" in manager.list_image_encoders()


def test_cli_plugins_json_lists_all_six_kinds():
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"image_encoders", "fusions", "generators", "normalizers", "canonicalizers", "readers"}
    for kind, names in BUILT_INS.items():
        assert names <= {item["name"] for item in data[kind]}
    assert {"name": "mag", "plugin": "fusions"}.items() <= next(i for i in data["fusions"] if i["name"] == "mag").items()


def test_cli_plugins_table_and_installed_console_script():
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0 and "xattn" in result.output and "cross_attention" in result.output
    env = {**os.environ, "MXT_DISABLE_PLUGINS": "t5,baselines"}
    script = os.path.join(os.path.dirname(sys.executable), "mxt")
    completed = subprocess.run([script, "plugins", "--json"], capture_output=True, text=True, env=env,
                               check=True)
    assert json.loads(completed.stdout)["generators"] == []
