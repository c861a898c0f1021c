"""The README's "Adding a method" guide, followed literally: a module in a folder on the method
path plus a config entry is all a new method takes."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from conftest import tiny_model, tokens

import methods
from methods import available_methods, method_module
from prunebench.calibration import Calibration
from prunebench.config import ConfigError, check_config
from prunebench.pruning import check_params, prune_model
from prunebench.pruning.checkpoint import layer_shapes, load_pruned, save_pruned

# A throw-away method: keeps the first KV groups and MLP channels of every layer ("head") or the last.
GUIDE_METHOD = textwrap.dedent('''
    from typing import Literal

    from prunebench.calibration import Calibration
    from prunebench.pruning.structure import PruningPlan, Shapes, uniform_counts

    NEEDS = None


    def prune(model, ratio: float, calib: Calibration, *, keep: Literal["head", "tail"] = "head") -> PruningPlan:
        shapes = Shapes.of(model)
        units, channels = uniform_counts(shapes, ratio)
        def kept(n, removed):
            return list(range(n - removed)) if keep == "head" else list(range(removed, n))
        return PruningPlan.from_units(shapes, [kept(shapes.kv_heads, units)] * shapes.layers,
                                      [kept(shapes.intermediate, channels)] * shapes.layers)
''')


@pytest.fixture
def guide_method(tmp_path, monkeypatch):
    folder = tmp_path / "my_methods"
    folder.mkdir()
    (folder / "keep_first.py").write_text(GUIDE_METHOD)
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(folder)])
    yield "keep_first"
    sys.modules.pop("methods.keep_first", None)


def test_a_module_on_the_method_path_is_a_method(guide_method, tmp_path, tokenizer):
    assert guide_method in available_methods()
    module = method_module(guide_method)
    with pytest.raises(ValueError, match=r"keep='middle'.*\['head', 'tail'\]"):
        check_params(module, {"keep": "middle"})
    model = tiny_model(kv_heads=2, layers=3)
    plan = prune_model(model, module, 0.5, Calibration(), {"keep": "tail"})
    # ratio 0.5 of 2 KV groups: int(0.5 * 2) = 1 group removed, the first (keep="tail")
    assert [k.kv_heads for k in plan.layers] == [[1]] * 3
    assert [k.q_heads for k in plan.layers] == [[2, 3]] * 3
    save_pruned(model, tokenizer, tmp_path / "ckpt", {"method": guide_method})
    reloaded = load_pruned(tmp_path / "ckpt")
    assert layer_shapes(reloaded) == layer_shapes(model)
    ids = tokens(2, 16)
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)


def test_a_config_entry_names_the_new_module(guide_method, data_root):
    import yaml
    from conftest import REPO

    config = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    config["data_dir"] = str(data_root)
    config["methods"] = {"my-method": {"module": guide_method, "params": {"keep": "tail"}}}
    check_config(config, verify_data=False)
    config["methods"]["my-method"]["params"] = {"kep": "tail"}
    with pytest.raises(ConfigError, match="did you mean 'keep'"):
        check_config(config, verify_data=False)
