"""The report's rank-need and format sections, from fake run dirs plus real diagnostics."""

from __future__ import annotations

import json
import shutil

import torch
import yaml

from vlmtune.diagnose.rank import analyse, summarise
from vlmtune.families import get_family
from vlmtune.report import build_report
from vlmtune.report.diagnostics import format_findings, rank_rows, rank_verdict
from vlmtune.report.read import load_grid_runs
from vlmtune.report.summary import summarize


def _rank_json(rank: int | None) -> dict:
    """A real ``rank.json`` summary of updates of exactly ``rank`` (None: a full-rank Gaussian
    update) on 128x128 projections."""
    gen = torch.Generator().manual_seed(0)
    base, tuned = {}, {}
    for layer in range(2):
        name = f"model.language_model.layers.{layer}.self_attn.q_proj.weight"
        base[name] = torch.randn(128, 128, generator=gen)
        update = (torch.randn(128, 128, generator=gen) if rank is None
                  else torch.randn(128, rank, generator=gen) @ torch.randn(rank, 128, generator=gen))
        tuned[name] = base[name] + update
    return summarise(analyse(tuned, base, get_family("qwen2_vl")), rank=16)


def _grid(fake_grid, tmp_path, rank: int | None, analysed: bool = True):
    grid = tmp_path / "grid"
    shutil.copytree(fake_grid, grid)
    if analysed:
        (grid / "full" / "rank.json").write_text(json.dumps(_rank_json(rank)))
    return grid


def test_rank_section_reports_energy_at_the_grids_lora_ranks(fake_grid, tmp_path):
    grid = _grid(fake_grid, tmp_path, rank=4)  # a rank-4 update: r=8 and r=16 keep all of it
    view = summarize(load_grid_runs(grid))
    header, rows = rank_rows(view)
    assert header == ["full variant", "r=1", "r=2", "r=4", "r=8", "r=16", "r=64", "verdict"]
    assert len(rows) == 1 and rows[0][0] == "full"
    assert rows[0][3:6] == ["100%", "100%", "100%"]  # r=4, 8, 16
    assert float(rows[0][1].rstrip("%")) < 100  # r=1 does not
    (line,) = rank_verdict(view)
    assert "r=8 keeps 100%; r=16 keeps 100%" in line and "low-rank" in line
    paths = build_report(grid)
    html = paths["html"].read_text()
    assert 'id="rank-table"' in html and 'alt="rank need"' in html
    assert (grid / "rank-need.png").is_file() and "## Rank need" in paths["md"].read_text()


def test_high_rank_update_is_called_high_rank(fake_grid, tmp_path):
    grid = _grid(fake_grid, tmp_path, rank=None)  # full-rank random update of 128x128 matrices
    (line,) = rank_verdict(summarize(load_grid_runs(grid)))
    energy = json.loads((grid / "full" / "rank.json").read_text())["median_energy"]
    assert energy["16"] < 0.5 and "The update is high-rank" in line


def test_no_rank_json_no_section(fake_grid, tmp_path):
    grid = _grid(fake_grid, tmp_path, rank=None, analysed=False)
    view = summarize(load_grid_runs(grid))
    assert rank_rows(view)[1] == [] and rank_verdict(view) == []
    assert 'id="rank-table"' not in build_report(grid)["html"].read_text()


def _mc(path, task, answer_text: bool, n=6):
    rows = []
    for i in range(n):
        options = ["red", "blue", "green"]
        suffix = ("Answer with the option's text from the given choices directly." if answer_text
                  else "Answer with the option's letter from the given choices directly.")
        answer = options[i % 3] if answer_text else "ABC"[i % 3]
        prompt = "What colour is the circle?\nA. red\nB. blue\nC. green\n" + suffix
        rows.append({"id": f"{task}-{i}", "task": task, "answers": [answer], "options": options,
                     "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]},
                                  {"role": "assistant", "content": [{"type": "text", "text": answer}]}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_format_drift_between_train_and_test_is_in_the_report(fake_grid, tmp_path):
    grid = _grid(fake_grid, tmp_path, rank=None, analysed=False)
    train, test = _mc(tmp_path / "train.jsonl", "mc", True), _mc(tmp_path / "test.jsonl", "mc", False)
    for name in ("lora-r16", "full"):
        config = yaml.safe_load((grid / name / "config.yaml").read_text())
        config["data"]["train"], config["eval"]["test"] = str(train), str(test)
        (grid / name / "config.yaml").write_text(yaml.safe_dump(config))
    found = format_findings(summarize(load_grid_runs(grid)))
    drift = [f for f in found if "option text" in f["message"]]
    assert len(drift) == 1 and drift[0]["variants"] == ["lora-r16", "full"]  # one pair, checked once
    html = build_report(grid)["html"].read_text()
    assert 'id="format-findings"' in html and "option text" in html


def test_missing_data_files_give_no_format_section(fake_grid, tmp_path):
    grid = _grid(fake_grid, tmp_path, rank=None, analysed=False)  # its data/*.jsonl are absent
    assert format_findings(summarize(load_grid_runs(grid))) == []


def test_rank_need_reading_is_inconclusive_when_the_full_run_learned_nothing(unlearned_grid, tmp_path):
    """On a grid where no variant beats the constant-answer prior, the measured shares stay
    but the reading ("low-rank: the grid's largest LoRA can express it") does not."""
    from vlmtune.report.render import verdicts

    grid = _grid(unlearned_grid, tmp_path, rank=4)
    lines = verdicts(summarize(load_grid_runs(grid)))
    (rank_line,) = [line for line in lines if line.startswith("rank need:")]
    assert "r=16 keeps 100%" in rank_line and "inconclusive: no variant learned the task" in rank_line
    assert "can express it" not in rank_line
    for line in lines:
        assert "suffices" not in line and "not the bottleneck" not in line and "high-rank" not in line, line
    assert any("LoRA rank r=8 vs r=16: inconclusive: no variant learned the task" in line for line in lines)
    assert any("full vs LoRA r=16: inconclusive: no variant learned the task" in line for line in lines)
    md = build_report(grid)["md"].read_text()
    assert "inconclusive: no variant learned the task" in md


def test_rank_need_reading_names_a_full_run_that_did_not_learn(fake_grid, tmp_path):
    view = summarize(load_grid_runs(_grid(fake_grid, tmp_path, rank=4)))
    (line,) = rank_verdict(view, learned={"lora-r16"})
    assert "inconclusive: full did not learn the task" in line
    (line,) = rank_verdict(view, learned={"full"})
    assert "can express it" in line and "the gap is not rank" in line and "inconclusive" not in line


def test_learning_grid_keeps_its_conclusions(fake_grid, tmp_path):
    from vlmtune.report.render import verdicts

    lines = verdicts(summarize(load_grid_runs(_grid(fake_grid, tmp_path, rank=4))))
    assert not any("inconclusive" in line for line in lines), lines
    assert any("full beats LoRA r=16" in line and "falls short" in line for line in lines), lines
