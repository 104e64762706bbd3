"""The vision probe: swapping the vision side really swaps weights, and the 2x2 is scored."""

from __future__ import annotations

import json

import pytest
import torch

from vlmtune.config import dump_config
from vlmtune.data.collate import Collator
from vlmtune.diagnose.vision_probe import load_vision, probe_run, summarise, vision_state
from vlmtune.model.load import load_base
from vlmtune.train.loop import load_split


def _fake_run(tmp_path, name, cfg, role, seed):
    """A finished full fine-tune run whose only change from the base is noise on ``role``."""
    model, processor, family = load_base(cfg.model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if family.role_of(pname) == role:
                p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    run = tmp_path / name
    (run / "model").mkdir(parents=True)
    model.save_pretrained(run / "model")
    processor.save_pretrained(run / "model")
    cfg = cfg.model_copy(update={"name": name})
    (run / "config.yaml").write_text(dump_config(cfg))
    return run


@pytest.fixture
def probe_cfg(tiny_factory, run_config, shapes_data):
    return run_config(tiny_factory("qwen2_vl"), method={"kind": "full"}, train_file="train_grounding.jsonl",
                      eval={"test": str(shapes_data / "test_grounding.jsonl"), "max_samples": 4})


def _logits(model, cfg, processor, family):
    data = load_split(cfg, cfg.data.train, processor, family, model.config)
    batch = Collator(processor, cfg.data.max_length)([data[0], data[1]])
    batch.pop("labels")
    with torch.no_grad():
        return model(**batch).logits


def test_swapping_the_vision_side_changes_logits_back_to_the_base(tmp_path, probe_cfg):
    run = _fake_run(tmp_path, "vision-tuned", probe_cfg, "vision", 0)
    base, processor, family = load_base(probe_cfg.model)
    tuned, _, _ = load_base(probe_cfg.model.model_copy(update={"path": str(run / "model")}))
    base.eval(), tuned.eval()
    before = _logits(tuned, probe_cfg, processor, family)
    reference = _logits(base, probe_cfg, processor, family)
    assert not torch.allclose(before, reference, atol=1e-4)
    load_vision(tuned, vision_state(base, family))
    assert torch.allclose(_logits(tuned, probe_cfg, processor, family), reference, atol=1e-5)


def test_probe_scores_the_two_by_two_and_writes_json(tmp_path, probe_cfg):
    run = _fake_run(tmp_path, "vision-tuned", probe_cfg, "vision", 0)
    result = probe_run(run)
    saved = json.loads((run / "vision_probe.json").read_text())
    assert saved["vision_changed"] and saved["changed_tensors"] > 0
    grounding = saved["tasks"]["grounding"]
    assert set(grounding["scores"]) == {"run", "base_language+base_vision", "tuned_language+base_vision",
                                        "tuned_language+tuned_vision", "base_language+tuned_vision"}
    assert grounding["vision_effect_tuned_language"] is not None
    assert result["verdict"] == saved["verdict"]


def test_language_only_run_has_nothing_to_swap_unless_vision_from(tmp_path, probe_cfg):
    lang = _fake_run(tmp_path, "language-tuned", probe_cfg, "language", 1)
    alone = probe_run(lang, write=False)
    assert not alone["vision_changed"] and "nothing to swap" in alone["verdict"]
    vis = _fake_run(tmp_path, "vision-tuned", probe_cfg, "vision", 0)
    other = probe_run(lang, vision_from=vis, write=False)
    assert other["vision_changed"] and other["vision_from"] == str(vis)


def _cell(value, n=40, spread=0.0):
    return {"grounding": {"metric": "iou", "value": value,
                          "scores": {f"i{k}": value + spread * ((k % 2) - 0.5) for k in range(n)}}}


def test_summary_attributes_the_gain_to_vision_beyond_noise():
    cells = {("tuned", "run"): _cell(0.8, spread=0.1), ("tuned", "tuned"): _cell(0.8, spread=0.1),
             ("base", "base"): _cell(0.2), ("tuned", "base"): _cell(0.5), ("base", "tuned"): _cell(0.4)}
    t = summarise(cells, ["w"], run=None, source=None)["tasks"]["grounding"]
    assert t["vision_effect_tuned_language"]["value"] == pytest.approx(0.3)
    assert t["vision_share_of_gain"] == pytest.approx(0.5)
    assert "vision encoder is a bottleneck" in t["verdict"] and "50%" in t["verdict"]
    cells[("tuned", "base")] = _cell(0.8, spread=0.3)
    t = summarise(cells, ["w"], run=None, source=None)["tasks"]["grounding"]
    assert "not the bottleneck" in t["verdict"]


def test_cli_diagnose_vision(tmp_path, probe_cfg):
    from typer.testing import CliRunner

    from vlmtune.cli import app

    run = _fake_run(tmp_path, "vision-tuned", probe_cfg, "vision", 0)
    result = CliRunner().invoke(app, ["diagnose", "vision", "--run", str(run), "--max-samples", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "vision_probe.json").read_text())["tasks"]["grounding"]["metric"] == "iou"
