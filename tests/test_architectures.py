"""Every architecture in the installed transformers' image-text-to-text mapping is classified
(src/vlmtune/families/architectures.json): *supported* ones pass vlmtune end to end on a
generated tiny build, *refused* ones fail at config time with their one-line reason. A new
transformers release shows its new architectures here as failures until classified.

Cost: the classification checks are fast; each supported architecture's end-to-end test
builds one tiny checkpoint (shared by its checks) and runs LoRA (8 steps), a merge, plain
PEFT loading, batched vs one-by-one generation and full fine-tuning (4 steps): marked slow.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from vlmtune.errors import InputError
from vlmtune.families import REGISTRY, classification, get_family

MAPPING = sorted(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)
TABLE = classification()
SUPPORTED = [mt for mt in MAPPING if TABLE.get(mt, {}).get("status") == "supported"]
REFUSED = [mt for mt in MAPPING if TABLE.get(mt, {}).get("status") == "refused"]


@pytest.mark.parametrize("model_type", MAPPING)
def test_every_architecture_is_classified(model_type):
    verdict = TABLE.get(model_type)
    assert verdict is not None, f"{model_type}: new in this transformers; classify it in architectures.json"
    assert verdict["status"] in ("supported", "refused")
    if verdict["status"] == "refused":
        assert verdict["reason"] and "\n" not in verdict["reason"]


@pytest.mark.parametrize("model_type", REFUSED)
def test_refused_at_config_time_with_reason(model_type):
    with pytest.raises(InputError, match=re.escape("not supported: " + TABLE[model_type]["reason"])):
        get_family(model_type, source="config.json")


# Verified end to end at the last classification; the target is 40 (docs/models.md).
MIN_SUPPORTED = 40


def test_supported_count_does_not_regress():
    assert len(SUPPORTED) >= MIN_SUPPORTED, SUPPORTED


def test_models_doc_is_current():
    from pathlib import Path

    from vlmtune.testing.models_doc import render_models_md

    doc = Path(__file__).resolve().parents[1] / "docs" / "models.md"
    assert doc.read_text() == render_models_md(), "run: PYTHONPATH=src python scripts/write_models_doc.py"


@pytest.mark.parametrize("model_type", sorted(REGISTRY))
def test_discovered_roles_match_hand_written_families(model_type):
    """Discovery reads the same roles off the module tree as the hand-written family files."""
    from transformers import AutoConfig

    from vlmtune.families.discover import find_roles, meta_model
    from vlmtune.testing.shrink import shrink_dict

    base = AutoConfig.for_model(model_type)
    roles = find_roles(meta_model(type(base).from_dict(shrink_dict(base.to_dict(), vocab=1 << 30))))
    fam = REGISTRY[model_type]
    assert set(roles["vision"]) == set(fam.vision)
    assert set(roles["projector"]) == set(fam.projector)
    assert set(roles["language"]) == set(fam.language)


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def _check_generation(path, family, samples):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlmtune.evaluate.run import build_prompt
    from vlmtune.evaluate.generate import Generator

    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    generator = Generator(model, AutoProcessor.from_pretrained(path), family, max_new_tokens=4)
    prompts = [build_prompt(s, []) for s in samples]
    batched = generator([p[0] for p in prompts], [p[1] for p in prompts])
    single = [generator([p[0]], [p[1]])[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]


@pytest.mark.slow
@pytest.mark.parametrize("model_type", SUPPORTED)
def test_end_to_end(model_type, tiny_factory, run_config, shapes_data, tmp_path):
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForImageTextToText

    from vlmtune.data.schema import load_samples
    from vlmtune.model.merge import logits_of, merge_run, probe_batch
    from vlmtune.model.methods import prepare
    from vlmtune.train import train

    path = tiny_factory(model_type)
    family = get_family(model_type, config=AutoConfig.from_pretrained(path))
    steps = {"max_steps": 8, "batch_size": 2, "checkpoint_every": 8}
    cfg = run_config(path, data={"max_samples": 2}, train=steps, eval={"max_new_tokens": 2})
    run = train(cfg)
    losses = _losses(run)
    assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0], losses

    report = merge_run(run, tmp_path / "merged")
    assert report["max_abs_diff"] < 1e-4
    _, processor, fam = prepare(cfg)
    batch = probe_batch(cfg, processor, fam, AutoConfig.from_pretrained(path), n=2)
    plain = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(path), run / "adapter").eval()
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged").eval()
    assert torch.allclose(logits_of(plain, batch), logits_of(merged, batch), atol=1e-4)

    _check_generation(path, family, load_samples(shapes_data / "test.jsonl")[:2])

    full = run_config(path, name="full", method={"kind": "full"}, data={"max_samples": 2},
                      train={**steps, "max_steps": 4, "lr": 1e-3, "checkpoint_every": 4})
    losses = _losses(train(full))
    assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0], losses
    assert model_type in REGISTRY or family.notes.startswith("roles discovered")
