"""The lessons (`vlmtune demo --lesson NAME`): shipped grids, CLI, and each finding's wording on
forced numbers (a clear finding, and numbers that do not show it)."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import yaml

from vlmtune.compare.grid import load_grid
from vlmtune.config import build_config
from vlmtune.report.lessons import FINDINGS, ROLES, lesson_finding
from vlmtune.report.read import RunData
from vlmtune.report.summary import GridView
from vlmtune.report.verdict import Entry
from vlmtune.zoo import lessons

REPO = Path(__file__).parent.parent


@pytest.mark.parametrize("name", list(lessons.LESSONS))
def test_shipped_lesson_grid_validates_and_matches_configs(tmp_path, name):
    shipped = lessons.GRIDS / f"{name}.yaml"
    assert (REPO / "configs" / "lessons" / f"{name}.yaml").read_text() == shipped.read_text()
    grid = lessons.lesson_grid(name, tmp_path / "data", tmp_path)
    assert grid["base"]["data"]["train"].startswith(str(tmp_path / "data"))
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    loaded = load_grid(path)
    assert loaded.lesson == name and name in FINDINGS
    assert set(ROLES[name]) <= {v.name for v in loaded.variants}


def test_lesson_registry_order_and_all(monkeypatch, tmp_path):
    assert lessons.lesson_names("all") == ["format-drift", "forgetting", "vision-bottleneck", "budget", "rank"]
    from rich.console import Console

    from vlmtune.errors import VlmtuneError

    ran = []

    def fake(name, out, console, jobs=None):
        ran.append(name)
        if name == "forgetting":
            raise VlmtuneError("1 of 3 variants failed: mix-0: boom")
        return name

    monkeypatch.setattr(lessons, "run_lesson", fake)
    with pytest.raises(VlmtuneError, match=r"^lesson forgetting: 1 of 3 variants failed: mix-0: boom$"):
        lessons.run_lessons("all", tmp_path, console=Console(quiet=True))
    assert ran == list(lessons.LESSONS)  # the lessons after the failed one still ran


def test_unknown_lesson_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from vlmtune import cli

    monkeypatch.setattr(sys, "argv", ["vlmtune", "demo", "--lesson", "nope", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    lines = [ln for ln in (captured.err + captured.out).splitlines() if ln.strip()]
    assert exc.value.code == 2
    assert len(lines) == 1 and "unknown lesson 'nope'" in lines[0] and "format-drift" in lines[0]
    assert not (tmp_path / "out").exists()


def test_grid_refuses_an_unknown_lesson(tmp_path):
    from vlmtune.errors import ConfigError

    path = tmp_path / "g.yaml"
    path.write_text("name: g\nlesson: typo\nbase: {model: {path: m}}\nvariants:\n  - {name: a, train: false}\n")
    with pytest.raises(ConfigError, match=r"g.yaml:2: lesson: unknown lesson 'typo'"):
        load_grid(path)


# --- the findings' wording on forced numbers -------------------------------------------------

N = 100


def _items(mean: float, seed: str) -> dict[str, float]:
    """N 0/1 scores with exactly ``round(mean * N)`` ones, shuffled per seed."""
    ones = round(mean * N)
    values = [1.0] * ones + [0.0] * (N - ones)
    random.Random(seed).shuffle(values)
    return {f"i{k}": v for k, v in enumerate(values)}


def _entry(name: str, kind: str, score: float, *, r: int | None = None, compliance: float | None = None,
           general: float | None = None) -> Entry:
    return Entry(name, f"{kind} {name}", kind, r=r, score=score, scores=_items(score, name),
                 compliance=compliance, compliance_scores=_items(compliance, name + "c") if compliance else {},
                 general=general, general_scores=_items(general, name + "g") if general is not None else {})


def _view(tmp_path: Path, task: str, metric: str, entries: list[Entry], overrides: dict | None = None,
          general: str | None = None) -> GridView:
    runs = []
    for e in entries:
        extra = (overrides or {}).get(e.name, {})
        cfg = build_config({"name": e.name, "model": {"path": "m"}, "train": {"out_dir": str(tmp_path)}, **extra})
        (tmp_path / e.name).mkdir(exist_ok=True)
        runs.append(RunData(e.name, tmp_path / e.name, cfg, trains=e.trained))
    return GridView(runs=runs, baseline=runs[0], tasks=[task], metric={task: metric},
                    general_task="vqa" if general else None, general_metric=general, entries={task: entries})


def test_format_drift_finding_states_the_collapse_and_the_repair(tmp_path):
    entries = [_entry("baseline", "untuned", 0.76, compliance=1.0), _entry("text-answers", "lora", 0.02, compliance=0.03),
               _entry("converted", "lora", 0.78, compliance=1.0)]
    text = " ".join(lesson_finding("format-drift", _view(tmp_path, "mc", "exact_match", entries)))
    assert "Trained on option text, tested on letters: exact match 0.76 -> 0.02" in text
    assert "letter format 100% -> 3%" in text
    assert "restores exact match 0.78" in text and "back to the untuned level" in text


def test_format_drift_without_a_drop_says_so(tmp_path):
    entries = [_entry("baseline", "untuned", 0.76), _entry("text-answers", "lora", 0.74),
               _entry("converted", "lora", 0.75)]
    text = " ".join(lesson_finding("format-drift", _view(tmp_path, "mc", "exact_match", entries)))
    assert "no collapse beyond noise" in text and "no repair beyond noise" in text


def test_forgetting_finding_states_how_much_the_drop_shrinks(tmp_path):
    entries = [_entry("baseline", "untuned", 0.0, general=0.85), _entry("mix-0", "lora", 0.05, general=0.05),
               _entry("mix-0.3", "lora", 0.05, general=0.65)]
    view = _view(tmp_path, "grounding", "iou", entries, {"mix-0.3": {"data": {"mix_general": 0.3, "general": "g.jsonl"}}}, "exact_match")
    text = " ".join(lesson_finding("forgetting", view))
    assert "general exact match 0.85 -> 0.05 (-0.8" in text
    assert "with 30% general data mixed back in it moves to 0.65" in text
    assert "the drop shrinks by 0.6 (75% of it" in text and "reduced, not removed: 0.2 of it is left" in text


def test_forgetting_without_a_drop_claims_nothing(tmp_path):
    entries = [_entry("baseline", "untuned", 0.0, general=0.85), _entry("mix-0", "lora", 0.05, general=0.83),
               _entry("mix-0.3", "lora", 0.05, general=0.85)]
    view = _view(tmp_path, "grounding", "iou", entries, {"mix-0.3": {"data": {"mix_general": 0.3, "general": "g.jsonl"}}}, "exact_match")
    text = " ".join(lesson_finding("forgetting", view))
    assert "no forgetting beyond noise" in text and "shrinks" not in text.replace("to shrink", "")


def test_vision_bottleneck_finding_and_probe(tmp_path):
    entries = [_entry("baseline", "untuned", 0.05), _entry("frozen-vision", "lora", 0.07),
               _entry("full-vision", "lora", 0.6)]
    view = _view(tmp_path, "text", "anls", entries, {"full-vision": {"trainable": {"vision": True}}})
    (tmp_path / "full-vision" / "vision_probe.json").write_text(json.dumps(
        {"tasks": {"text": {"verdict": "tuned vision side adds +0.5 ANLS: the vision encoder is a bottleneck."}}}))
    text = " ".join(lesson_finding("vision-bottleneck", view))
    assert "vision tower frozen does not help beyond noise: ANLS 0.05 -> 0.07" in text
    assert "training the tower too reaches 0.6" in text and "the frozen tower was the bottleneck" in text
    assert "vlmtune diagnose vision on full-vision: tuned vision side adds +0.5" in text


def test_vision_bottleneck_when_the_tower_does_not_matter(tmp_path):
    entries = [_entry("baseline", "untuned", 0.05), _entry("frozen-vision", "lora", 0.5),
               _entry("full-vision", "lora", 0.52)]
    text = " ".join(lesson_finding("vision-bottleneck", _view(tmp_path, "text", "anls", entries)))
    assert "vision tower frozen helps: ANLS 0.05 -> 0.5" in text
    assert "not shown to be the bottleneck" in text


def test_vision_bottleneck_gain_below_the_prior_is_inconclusive(tmp_path):
    entries = [_entry("baseline", "untuned", 0.0), _entry("frozen-vision", "lora", 0.0),
               _entry("full-vision", "lora", 0.2)]
    view = _view(tmp_path, "text", "anls", entries)
    view.prior["text"] = _entry("prior", "prior", 0.3)
    text = " ".join(lesson_finding("vision-bottleneck", view))
    assert "but does not beat the untuned baseline and the constant-answer prior beyond noise: inconclusive" in text
    assert "was the bottleneck" not in text


def _rank_view(tmp_path: Path, scores: dict[str, float], energy: dict[str, float]) -> GridView:
    entries = [_entry("baseline", "untuned", 0.05)]
    entries += [_entry(f"lora-r{r}", "lora", scores[f"r{r}"], r=r) for r in (1, 2, 4, 8, 16)]
    entries.append(_entry("full", "full", scores["full"]))
    view = _view(tmp_path, "grounding", "exact_match", entries)
    (tmp_path / "full" / "rank.json").write_text(json.dumps({"median_energy": energy, "matrices": 28}))
    return view


def test_rank_finding_compares_saturation_with_rank_need(tmp_path):
    scores = {"r1": 0.3, "r2": 0.5, "r4": 0.7, "r8": 0.71, "r16": 0.72, "full": 0.75}
    energy = {"1": 0.3, "2": 0.5, "4": 0.92, "8": 0.96, "16": 0.99, "64": 1.0}
    text = " ".join(lesson_finding("rank", _rank_view(tmp_path, scores, energy)))
    assert "r=1 0.3; r=2 0.5; r=4 0.7; r=8 0.71; r=16 0.72; full 0.75; share of the full update's energy a " \
           "rank-r approximation keeps: r=1 30%, r=2 50%, r=4 92%" in text
    assert "The sweep saturates at r=4" in text and "reaches 90% of the full update's energy at r=4" in text
    assert "predicts this" in text
    scores.update(r4=0.45, r8=0.5, r16=0.8)  # still rising at the top of the sweep, while r=4 keeps 92%
    text = " ".join(lesson_finding("rank", _rank_view(tmp_path, scores, energy)))
    assert "The sweep has not saturated by r=16" in text and "does not predict where the sweep saturates" in text


def test_rank_finding_is_inconclusive_when_nothing_learned(tmp_path):
    scores = {"r1": 0.05, "r2": 0.06, "r4": 0.05, "r8": 0.04, "r16": 0.06, "full": 0.05}
    text = " ".join(lesson_finding("rank", _rank_view(tmp_path, scores, {"1": 0.2, "16": 0.5})))
    assert "inconclusive: no variant learned the task" in text and "saturates" not in text


def _budget_view(tmp_path: Path, tiny_factory, shapes_data, large: float, small: float) -> GridView:
    train = {"train": str(shapes_data / "train_grounding.jsonl"), "root": str(shapes_data), "max_length": 256}
    big, little = tiny_factory("qwen2_vl"), tiny_factory("qwen2_vl", hidden=32)
    entries = [_entry("baseline", "untuned", 0.05), _entry("large-lora", "lora", large, r=16),
               _entry("small-full", "full", small)]
    return _view(tmp_path, "grounding", "iou", entries, {
        "large-lora": {"model": {"path": str(big)}, "method": {"kind": "lora", "r": 16}, "data": train},
        "small-full": {"model": {"path": str(little)}, "method": {"kind": "full"}, "data": train}})


def test_budget_finding_states_both_memory_plans_and_the_winner(tmp_path, tiny_factory, shapes_data):
    text = " ".join(lesson_finding("budget", _budget_view(tmp_path, tiny_factory, shapes_data, 0.6, 0.3)))
    assert "Planned training memory" in text and text.count(" MiB") == 2
    assert "the larger model with LoRA beats the smaller one fully fine-tuned by 0.3" in text
    text = " ".join(lesson_finding("budget", _budget_view(tmp_path, tiny_factory, shapes_data, 0.3, 0.32)))
    assert "within noise of each other" in text and "beats" not in text
    text = " ".join(lesson_finding("budget", _budget_view(tmp_path, tiny_factory, shapes_data, 0.05, 0.06)))
    assert "inconclusive: no variant learned the task" in text and "LoRA beats" not in text


def test_budget_finding_says_when_the_plans_are_not_one_budget(tmp_path, tiny_factory, shapes_data, monkeypatch):
    from vlmtune.report import lessons as rules

    plans = {"large-lora": 200 * 2**20, "small-full": 100 * 2**20}
    monkeypatch.setattr(rules, "_planned", lambda run: plans[run.name])
    text = " ".join(lesson_finding("budget", _budget_view(tmp_path, tiny_factory, shapes_data, 0.6, 0.3)))
    assert "200 MiB" in text and "100 MiB" in text and "2.00x apart, not one budget" in text


def test_missing_roles_give_one_sentence(tmp_path):
    view = _view(tmp_path, "mc", "exact_match", [_entry("baseline", "untuned", 0.7)])
    assert lesson_finding("format-drift", view) == ["no finding: variant(s) text-answers, converted not evaluated."]
    assert lesson_finding(None, view) == []


# --- each lesson's grid end to end, on a tiny model with one step per variant ----------------

@pytest.mark.parametrize("name", list(lessons.LESSONS))
def test_lesson_runs_end_to_end_on_a_tiny_model(tmp_path, monkeypatch, tiny_factory, name):
    from dataclasses import replace

    from rich.console import Console

    model = str(tiny_factory("qwen2_vl"))
    lesson = lessons.LESSONS[name]
    monkeypatch.setitem(lessons.LESSONS, name, replace(lesson, synth={**lesson.synth, "n": 30}))
    shipped = lessons.lesson_grid

    def tiny(lesson_name, data, out_dir):
        grid = shipped(lesson_name, data, out_dir)
        grid["base"]["model"]["path"] = model
        grid["base"]["train"].update(max_steps=1, batch_size=2)
        grid["base"]["eval"].update(max_samples=4, max_new_tokens=4)
        for variant in grid["variants"]:  # the budget lesson's second size
            if "model" in variant:
                variant["model"]["path"] = model
        return grid

    monkeypatch.setattr(lessons, "lesson_grid", tiny)
    console = Console(file=open(tmp_path / "log.txt", "w"), width=200)
    outcome = lessons.run_lesson(name, tmp_path, console=console, jobs=1)
    console.file.close()
    log = (tmp_path / "log.txt").read_text()
    assert outcome.finding and all(f"{name}: {line[:40]}" in " ".join(log.split()) for line in outcome.finding[:1])
    md = outcome.report["md"].read_text()
    assert f"Lesson {name}: " in md
    assert yaml.safe_load((tmp_path / name / "grid.yaml").read_text())["lesson"] == name
    if name == "format-drift":
        assert "vlmtune data check --train train_mc_text.jsonl" in log and "option text" in log
        converted = [json.loads(x) for x in (tmp_path / "data-format-drift" / "train_mc_letters.jsonl").open()]
        assert {s["answers"][0] for s in converted} <= set("ABCD") and converted[0]["task"] == "mc"
    if name == "vision-bottleneck":
        assert (tmp_path / name / "full-vision" / "vision_probe.json").is_file()
        assert "vlmtune diagnose vision on full-vision" in md
    if name == "rank":
        assert (tmp_path / name / "full" / "rank.json").is_file()
    if name == "budget":
        assert "Planned training memory" in md and "MiB" in md


def test_mc_letters_converts_option_text_and_keeps_the_rest(tmp_path):
    from vlmtune.data.mc_letters import convert_file

    def sample(answer, options):
        return {"id": answer, "images": [], "task": "mc_text", "answers": [answer], "options": options,
                "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text":
                              "Colour?\nA. red\nB. Blue\nAnswer with the option's text."}]},
                             {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(s) + "\n" for s in (sample("blue.", ["red", "Blue"]),
                                                           sample("green", ["red", "blue"]))))
    assert convert_file(src, tmp_path / "out.jsonl", instruction="Answer with the letter.", task="mc") == (1, 1)
    done, kept = [json.loads(x) for x in (tmp_path / "out.jsonl").open()]
    assert done["answers"] == ["B"] and done["messages"][1]["content"][0]["text"] == "B"
    assert done["messages"][0]["content"][1]["text"] == "Colour?\nA. red\nB. Blue\nAnswer with the letter."
    assert done["task"] == "mc" and kept == sample("green", ["red", "blue"])
