"""The evaluator: batched greedy generation equals one-by-one; untuned, k-shot and tuned
models are scored by the same code; the general set is scored beside the task."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from vlmtune.data.schema import load_samples
from vlmtune.evaluate.run import build_prompt, evaluate, shots_for
from vlmtune.families import get_family
from vlmtune.evaluate.generate import Generator
from vlmtune.testing.tiny import TINY_FAMILIES
from vlmtune.train.loop import train


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_batched_generation_equals_one_by_one(family, tiny_factory, shapes_data):
    path = tiny_factory(family)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    fam = get_family(AutoConfig.from_pretrained(path).model_type)
    generator = Generator(model, processor, fam, max_new_tokens=6)
    samples = load_samples(shapes_data / "test.jsonl")[:4]  # vqa and grounding prompts of unequal length
    prompts = [build_prompt(s, []) for s in samples]
    batched = generator([p[0] for p in prompts], [p[1] for p in prompts])
    single = [generator([p[0]], [p[1]])[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert len({len(p[0][-1]["content"][-1]["text"]) for p in prompts}) > 1


def test_shots_are_same_task_and_never_the_sample(shapes_data):
    pool = load_samples(shapes_data / "train.jsonl")
    query = load_samples(shapes_data / "test_grounding.jsonl")[0]
    shots = shots_for(query, pool, 3, seed=0)
    assert len(shots) == 3 and {s.task for s in shots} == {"grounding"}
    assert shots == shots_for(query, pool, 3, seed=0)
    messages, images = build_prompt(query, shots)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    assert len(images) == 4


def test_untuned_fewshot_and_tuned_with_general_set(tiny_factory, run_config, shapes_data, tmp_path):
    model = tiny_factory("qwen2_vl")
    evaluation = {"test": str(shapes_data / "test_grounding.jsonl"), "general": str(shapes_data / "test_vqa.jsonl"),
                  "max_new_tokens": 8}
    base = evaluate(run_config(model, eval=evaluation), out=tmp_path / "base")
    shot = evaluate(run_config(model, eval={**evaluation, "shots": 2}), out=tmp_path / "2shot")
    cfg = run_config(model, eval=evaluation, train={"max_steps": 3})
    run = train(cfg)
    tuned = evaluate(cfg, run=run, out=run)
    merged = evaluate(run_config(model, eval={**evaluation, "merge": True}, train={"max_steps": 3}),
                      run=run, out=tmp_path / "merged")
    for result in (base, shot, tuned, merged):
        grounding = result["tasks"]["grounding"]
        assert {"iou", "iou_acc@0.5", "iou_unparseable", "format_compliance"} <= grounding.keys()
        assert "exact_match" in result["general"]["vqa"]
    assert shot["shots"] == 2 and "<|im_start|>assistant" in _first_prompt(tmp_path / "2shot")
    general_prompts = [r["prompt"] for r in _rows(tmp_path / "2shot") if r.get("split") == "general"]
    assert general_prompts and all(p.count("<|im_start|>assistant") == 1 for p in general_prompts)  # zero-shot
    assert tuned["adapter"] and not base["adapter"]
    assert [p["prediction"] for p in _rows(run)] == [p["prediction"] for p in _rows(tmp_path / "merged")]
    with pytest.raises(Exception, match="--overwrite"):
        evaluate(cfg, run=run, out=run)


def _rows(folder):
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def _first_prompt(folder):
    return _rows(folder)[0]["prompt"]


def test_every_task_type_untuned_3shot_and_tuned(tiny_factory, run_config, tmp_path):
    """caption, vqa, mc, grounding and text each get their metric and format compliance."""
    from vlmtune.data.synth import synth

    data = tmp_path / "all"
    synth(data, tasks=("caption", "vqa", "mc", "grounding", "text"), n=20, seed=0, image_size=64)
    model = tiny_factory("qwen2_vl")
    sections = dict(data={"train": str(data / "train.jsonl"), "val": str(data / "val.jsonl")},
                    eval={"test": str(data / "test.jsonl"), "max_new_tokens": 6, "batch_size": 8},
                    train={"max_steps": 2})
    expected = {"caption": "cider", "vqa": "exact_match", "mc": "mc_accuracy", "grounding": "iou", "text": "anls"}
    cfg = run_config(model, **sections)
    results = [evaluate(cfg, out=tmp_path / "base"),
               evaluate(run_config(model, **{**sections, "eval": {**sections["eval"], "shots": 3}}),
                        out=tmp_path / "3shot"),
               evaluate(cfg, run=train(cfg), out=tmp_path / "tuned")]
    for result in results:
        assert set(result["tasks"]) == set(expected)
        for task, metric in expected.items():
            assert metric in result["tasks"][task] and "format_compliance" in result["tasks"][task]


@pytest.mark.parametrize("share_images", [False, True])
def test_generate_all_groups_batches_but_keeps_input_order(share_images, tiny_factory, run_config, shapes_data,
                                                           monkeypatch):
    """Mixed tasks: batches are formed by task and length (or, when the generator prefills
    shared images once, by image), records come back in input order, each equal to
    generating that sample alone."""
    from vlmtune.evaluate.run import generate_all

    path = tiny_factory("qwen2_vl")
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    generator = Generator(model, processor, get_family("qwen2_vl"), max_new_tokens=6, share_images=share_images)
    vqa, grounding = load_samples(shapes_data / "test_vqa.jsonl"), load_samples(shapes_data / "test_grounding.jsonl")
    samples = [x for pair in zip(vqa[:3], grounding[:3]) for x in pair]  # alternating tasks
    calls = []
    original = Generator.__call__

    def spy(self, conversations, images):
        calls.append(({"box" in c[-1]["content"][-1]["text"] for c in conversations}, {id(i[0]) for i in images},
                      {i[0].tobytes() for i in images}))
        return original(self, conversations, images)

    monkeypatch.setattr(Generator, "__call__", spy)
    monkeypatch.setattr("vlmtune.evaluate.run.MIN_ROUND_ROWS", 1)  # image-by-image batches from 2 rows
    monkeypatch.setattr("vlmtune.evaluate.generate.MIN_ROUND_ROWS", 1)
    records = generate_all(generator, samples, [], run_config(path, eval={"batch_size": 3 if not share_images else 2}),
                           "mixed")
    monkeypatch.undo()
    assert [r["id"] for r in records] == [s.id for s in samples]
    if share_images:
        assert all(len(c[2]) == 1 and c[0] == {False, True} for c in calls)  # one image per batch, both tasks
    else:
        assert sorted(sorted(c[0]) for c in calls) == [[False], [True]]  # one task per batch
    alone = [generator(*[[p] for p in build_prompt(s, [])])[0].text for s in samples]
    assert [r["prediction"] for r in records] == alone
