"""``predict`` labels: a merged model is not called ``base``; a run dir finds its adapter."""

from __future__ import annotations

import json

from vlmtune.evaluate.predict import resolve_adapter, resolve_model


def test_labels_and_run_dirs(tmp_path):
    run = tmp_path / "runs" / "lora-r8"
    (run / "adapter").mkdir(parents=True)
    (run / "config.yaml").write_text("name: lora-r8\n")
    (run / "adapter" / "adapter_config.json").write_text("{}")
    assert resolve_adapter(str(run)) == (run / "adapter", "lora-r8")
    assert resolve_adapter(str(run / "adapter")) == (run / "adapter", "lora-r8")
    plain = tmp_path / "my-adapter"
    plain.mkdir()
    (plain / "adapter_config.json").write_text("{}")
    assert resolve_adapter(str(plain)) == (plain, "my-adapter")

    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "merge_report.json").write_text(json.dumps({"run": str(run)}))
    assert resolve_model(str(merged)) == (str(merged), "merged:lora-r8")
    full = tmp_path / "runs" / "full"
    (full / "model").mkdir(parents=True)
    (full / "config.yaml").write_text("name: full\n")
    assert resolve_model(str(full)) == (str(full / "model"), "full")
    assert resolve_model(str(full / "model")) == (str(full / "model"), "full")
    assert resolve_model("vlmtune/tiny-shapes") == ("vlmtune/tiny-shapes", "base")
