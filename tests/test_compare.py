"""``vlmtune compare``: grid parsing and merging, located errors, resume, failures, CLI.

Training and evaluation are replaced by fakes that write the artefacts the real ones write,
so these tests check the orchestration in a second, not the models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlmtune.compare import run as compare_mod
from vlmtune.compare.run import is_finished, load_grid, run_grid
from vlmtune.config import dump_config
from vlmtune.errors import ConfigError, VlmtuneError

GRID = """\
name: shapes-grid
out_dir: {out}
base:
  model: {{path: vlmtune/tiny-shapes}}
  data: {{train: data/train.jsonl, val: data/val.jsonl}}
  eval: {{metrics: [iou], max_new_tokens: 24}}
  train: {{max_steps: 5, lr: 2.0e-4}}
variants:
  - {{name: baseline, train: false}}
  - {{name: 3-shot, train: false, eval: {{shots: 3}}}}
  - name: lora-r16
    method:
      kind: lora
      r: {r}
  - {{name: full, method: {{kind: full}}, train: {{lr: 1.0e-4}}}}
"""


def write_grid(tmp_path: Path, r: int = 16, text: str | None = None) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(text if text is not None else GRID.format(out=tmp_path / "runs", r=r))
    return path


class Fakes:
    """Fake train/evaluate writing realistic artefacts, recording every call."""

    def __init__(self, fail: str | None = None):
        self.calls: list[tuple[str, str, dict]] = []
        self.fail = fail

    def train(self, cfg, *, overwrite=False, resume=False):
        run = cfg.run_dir
        self.calls.append(("train", cfg.name, {"resume": resume, "overwrite": overwrite}))
        if run.exists() and any(run.iterdir()) and not resume:
            raise AssertionError("train would refuse an existing run dir without resume")
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(dump_config(cfg))
        (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 2.0 / s}) + "\n" for s in (1, 2, 3)))
        resources = {"method": cfg.method.kind, "wall_time_s": 3.0, "samples_per_s": 5.0,
                     "peak_memory": {"kind": "rss_peak", "bytes": 2**30 * (3 if cfg.method.kind == "full" else 1)},
                     "trainable_params": 10**6 if cfg.method.kind == "full" else 10**4, "total_params": 10**6,
                     "trainable_pct": 100.0 if cfg.method.kind == "full" else 1.0,
                     "artefact": "adapter" if cfg.method.uses_adapter else "model", "artefact_bytes": 4096}
        (run / "resources.json").write_text(json.dumps(resources))
        return run

    def evaluate(self, cfg, *, run=None, out):
        self.calls.append(("evaluate", cfg.name, {"run": run, "out": out}))
        if cfg.name == self.fail:
            raise RuntimeError("generation blew up")
        assert (Path(out) / "config.yaml").is_file()
        score = {"baseline": 0.1, "3-shot": 0.2}.get(cfg.name, 0.6)
        rows = [{"id": f"s{i}", "task": "grounding", "images": [], "prompt": "where?", "references": ["[0, 0, 1, 1]"],
                 "prediction": "[0, 0, 1, 1]", "scores": {"iou": score + (0.05 if i % 2 else -0.05)},
                 "format_ok": True, "latency_s": 0.01} for i in range(8)]
        metrics = {"tasks": {"grounding": {"n": 8, "iou": score, "format_compliance": 1.0}}, "general": None,
                   "samples_per_s": 10.0, "latency_s_mean": 0.01, "shots": cfg.eval.shots,
                   "model": cfg.model.path, "adapter": run is not None}
        (Path(out) / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (Path(out) / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    def names(self, kind: str) -> list[str]:
        return [name for k, name, _ in self.calls if k == kind]


def test_variants_are_base_merged_with_their_keys(tmp_path):
    grid = load_grid(write_grid(tmp_path))
    assert grid.dir == tmp_path / "runs" / "shapes-grid"
    v = {x.name: x for x in grid.variants}
    assert [x.name for x in grid.variants] == ["baseline", "3-shot", "lora-r16", "full"]
    assert not v["baseline"].trains and not v["3-shot"].trains and v["full"].trains
    assert v["3-shot"].cfg.eval.shots == 3 and v["3-shot"].cfg.eval.max_new_tokens == 24  # deep merge
    assert v["full"].cfg.train.lr == 1.0e-4 and v["full"].cfg.train.max_steps == 5
    assert v["lora-r16"].cfg.method.r == 16 and v["lora-r16"].cfg.train.lr == 2.0e-4
    assert v["lora-r16"].run_dir == grid.dir / "lora-r16"


def test_invalid_variant_names_file_line_and_variant(tmp_path):
    path = write_grid(tmp_path, r=0)
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    line = path.read_text().splitlines().index("      r: 0") + 1
    assert str(err.value) == f"{path}:{line}: variants[2] (lora-r16): method.r: must be >= 1, got 0"


@pytest.mark.parametrize("edit, expected", [
    (("- {name: full, method: {kind: full}", "- {name: full, methd: {kind: full}"),
     r"variants\[3\] \(full\): methd: unknown key; did you mean 'method'\?"),
    (("name: 3-shot", "name: baseline"), r":10: variants\[1\] \(baseline\): name: duplicate variant name"),
    (("name: 3-shot", "name: 3 shot"), r":10: variants\[1\] \(3 shot\): name: must be a name matching"),
    (("base:\n", "base:\n  name: x\n"), r":4: base.name: set by the grid"),
    (("max_steps: 5", "max_steps: 0"), r":7: variants\[0\] \(baseline\): train.max_steps: must be >= 1, got 0"),
    (("name: shapes-grid", "name: shapes-grid\nvariantz: []"), r":2: variantz: unknown key"),
    (("train: {lr: 1.0e-4}", "train: {out_dir: elsewhere}"), r"variants\[3\] \(full\): train.out_dir: set by the grid"),
])
def test_grid_errors_are_located(tmp_path, edit, expected):
    text = GRID.format(out=tmp_path / "runs", r=16).replace(*edit)
    with pytest.raises(ConfigError, match=expected):
        load_grid(write_grid(tmp_path, text=text))


def test_grid_without_variants(tmp_path):
    with pytest.raises(ConfigError, match="variants: must be a non-empty list"):
        load_grid(write_grid(tmp_path, text="name: g\nbase: {model: {path: m}}\n"))


def test_run_then_resume_skips_finished_variants(tmp_path):
    grid = load_grid(write_grid(tmp_path))
    fakes = Fakes()
    outcome = run_grid(grid, train_fn=fakes.train, evaluate_fn=fakes.evaluate)
    assert fakes.names("train") == ["lora-r16", "full"]
    assert fakes.names("evaluate") == ["baseline", "3-shot", "lora-r16", "full"]
    assert set(outcome.status.values()) == {"done"} and all(is_finished(v) for v in grid.variants)
    assert (grid.dir / "baseline" / "config.yaml").is_file()  # eval-only run dirs are run dirs too
    evaluated = {c[1]: c[2] for c in fakes.calls if c[0] == "evaluate"}
    assert evaluated["baseline"]["run"] is None and evaluated["full"]["run"] == grid.dir / "full"
    assert outcome.report["html"].is_file() and outcome.report["md"].is_file()

    again = Fakes()
    outcome = run_grid(load_grid(grid.source), train_fn=again.train, evaluate_fn=again.evaluate)
    assert again.calls == [] and set(outcome.status.values()) == {"skipped"}

    (grid.dir / "full" / "metrics.json").unlink()          # trained, not evaluated
    (grid.dir / "lora-r16" / "resources.json").unlink()    # interrupted training
    (grid.dir / "lora-r16" / "metrics.json").unlink()
    third = Fakes()
    run_grid(load_grid(grid.source), train_fn=third.train, evaluate_fn=third.evaluate)
    assert third.names("train") == ["lora-r16"] and third.calls[0][2]["resume"] is True
    assert third.names("evaluate") == ["lora-r16", "full"]


def test_changed_config_of_a_finished_variant_is_flagged(tmp_path, capsys):
    from rich.console import Console

    run_grid(load_grid(write_grid(tmp_path)), train_fn=Fakes().train, evaluate_fn=Fakes().evaluate)
    console = Console(file=sys.stdout, width=300)
    run_grid(load_grid(write_grid(tmp_path, r=32)), train_fn=Fakes().train, evaluate_fn=Fakes().evaluate,
             console=console, build=False)
    out = capsys.readouterr().out
    assert "lora-r16: finished, skipped (config changed since: method.r: 16 -> 32" in out


def test_a_failing_variant_does_not_stop_the_others(tmp_path):
    grid = load_grid(write_grid(tmp_path))
    fakes = Fakes(fail="3-shot")
    with pytest.raises(VlmtuneError, match=r"1 of 4 variants failed: 3-shot: RuntimeError: generation blew up"):
        run_grid(grid, train_fn=fakes.train, evaluate_fn=fakes.evaluate)
    assert fakes.names("evaluate") == ["baseline", "3-shot", "lora-r16", "full"]
    md = (grid.dir / "report.md").read_text()
    assert "Not evaluated yet (no metrics.json): 3-shot." in md


def test_cli_compare_runs_the_grid(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vlmtune.cli import app

    fakes = Fakes()
    monkeypatch.setattr(compare_mod, "_default_train", lambda: fakes.train)
    monkeypatch.setattr(compare_mod, "_default_evaluate", lambda: fakes.evaluate)
    result = CliRunner().invoke(app, ["compare", str(write_grid(tmp_path))])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "shapes-grid" / "report.html").is_file()
    assert len(fakes.names("evaluate")) == 4


def test_cli_compare_error_is_one_line(tmp_path):
    path = write_grid(tmp_path, r=0)
    done = subprocess.run([sys.executable, "-c", "from vlmtune.cli import main; main()", "compare", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "variants[2] (lora-r16): method.r: must be >= 1, got 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_gpu_mem_preflight_flags_variants_that_will_not_fit(tmp_path, capsys):
    """``--gpu-mem``: every training variant is planned (vlmtune plan's code) before any
    runs; the one that will not fit is flagged, and the report says so."""
    from rich.console import Console

    from vlmtune.diagnose.preflight import plan_run

    grid = load_grid(write_grid(tmp_path))
    peaks = {v.name: plan_run(v.cfg).peak for v in grid.variants if v.trains}
    assert peaks["full"] > peaks["lora-r16"]
    gpu = (peaks["full"] + peaks["lora-r16"]) // 2
    fakes = Fakes()
    run_grid(grid, train_fn=fakes.train, evaluate_fn=fakes.evaluate, console=Console(file=sys.stdout, width=300),
             gpu_mem=f"{gpu}B")
    out = capsys.readouterr().out
    assert out.index("full will not fit") < out.index("[1/4]") and "lora-r16: fits" in out
    rows = json.loads((grid.dir / "preflight.json").read_text())["variants"]
    assert [(r["name"], r["fits"], r["peak"]) for r in rows] == [("lora-r16", True, peaks["lora-r16"]),
                                                                  ("full", False, peaks["full"])]
    assert "(will not fit)" in (grid.dir / "report.md").read_text()
