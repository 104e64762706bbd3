"""The typed config: YAML + overrides, and one clear message per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vlmtune.config import apply_overrides, dump_config, load_config, parse_overrides
from vlmtune.errors import ConfigError

GOOD = """\
name: shapes-lora
model: {path: ./tiny}
method:
  kind: lora
  r: 8
train: {lr: 2.0e-4, max_steps: 10}
"""


@pytest.fixture
def cfg_file(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(GOOD)
    return path


def test_overrides_parse_as_yaml(cfg_file):
    cfg = load_config(cfg_file, ["method.r=16", "train.max_steps=null", "method.targets=[q_proj, v_proj]"])
    assert (cfg.method.r, cfg.train.max_steps, cfg.method.targets) == (16, None, ["q_proj", "v_proj"])
    assert parse_overrides(["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


@pytest.mark.parametrize("override, message", [
    ("method.r=0", "cfg.yaml:5: method.r: must be >= 1, got 0"),
    ("method.kind=lorra", "method.kind: must be one of"),
    ("method.rr=3", "method.rr: unknown key; did you mean 'r'?"),
    ("train.lr=fast", "train.lr: must be a number, got 'fast'"),
    ("method.kind=freeze", "method.kind: freeze trains nothing"),
    ("trainable.language=true", "trainable.language: cannot fully train a role that also carries LoRA"),
    ("name=bad/name", "name: must match"),
    ("nonsense", "expected key.sub=value"),
])
def test_errors_name_file_line_and_field(cfg_file, override, message):
    overrides = [override] if override != "method.r=0" else []
    if override == "method.r=0":
        cfg_file.write_text(GOOD.replace("r: 8", "r: 0"))
    with pytest.raises(ConfigError) as err:
        load_config(cfg_file, overrides)
    assert message in str(err.value)
    assert str(cfg_file.name) in str(err.value) or override == "nonsense"


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {path: [\n")
    with pytest.raises(ConfigError, match="bad.yaml:.*invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_full_defaults_train_every_role_adapters_none(cfg_file):
    full = load_config(cfg_file, ["method.kind=full", "trainable.vision=false"])
    assert [full.trains_role(r) for r in ("vision", "projector", "language")] == [False, True, True]
    lora = load_config(cfg_file)
    assert not any(lora.trains_role(r) for r in ("vision", "projector", "language"))


def test_dump_roundtrips(cfg_file):
    cfg = load_config(cfg_file)
    again = apply_overrides(load_config(cfg_file), [])
    assert yaml.safe_load(dump_config(cfg)) == yaml.safe_load(dump_config(again))


SHIPPED = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    data = yaml.safe_load(path.read_text())
    if "variants" in data:  # a compare grid: validated by the grid loader
        from vlmtune.compare.grid import load_grid

        assert load_grid(path)
    else:
        load_config(path)


DEEPSPEED = sorted((Path(__file__).parent.parent / "configs" / "deepspeed").glob("*.json"))


@pytest.mark.parametrize("path", DEEPSPEED, ids=lambda p: p.name)
def test_shipped_deepspeed_configs_parse(path, cfg_file):
    from vlmtune.train.distributed import read_deepspeed_config

    assert read_deepspeed_config(path)["zero_optimization"]["stage"] == int(path.stem[-1])  # zero2 / zero3
    cfg = load_config(cfg_file, ["method.kind=full", f"train.deepspeed={path}"])
    assert cfg.train.distributed == "auto" and cfg.train.deepspeed == str(path)


def test_deepspeed_config_errors(tmp_path):
    from vlmtune.train.distributed import read_deepspeed_config

    bad = tmp_path / "ds.json"
    bad.write_text('{"zero_optimization": {"stage": 1}}')
    with pytest.raises(ConfigError, match="ds.json: zero_optimization.stage: expected 2 or 3, got 1"):
        read_deepspeed_config(bad)
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="ds.json: invalid JSON"):
        read_deepspeed_config(bad)
