"""``vlmtune data preview`` on the issue's LLaVA-style trailing-space template: the answer
(with the space the tokenizer glues to it) is what is labelled and highlighted."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from vlmtune.cli import app
from vlmtune.data.schema import load_samples
from vlmtune.testing import IMAGE_TOKENS
from vlmtune.testing.templates import LLAVA_TRAILING_SPACE


@pytest.fixture(scope="module")
def preview_config(tiny_factory, shapes_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("preview")
    model = root / "llava-trailing-space"
    shutil.copytree(tiny_factory("llava"), model)
    (model / "chat_template.jinja").write_text(LLAVA_TRAILING_SPACE)
    cfg = {"name": "p", "model": {"path": str(model)},
           "data": {"train": str(shapes_data / "train_mixed.jsonl"), "val": str(shapes_data / "val_vqa.jsonl"),
                    "max_length": 512},
           "eval": {"test": str(shapes_data / "test_vqa.jsonl")}}
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return root / "cfg.yaml"


def test_json_lines_show_the_labelled_answer(preview_config, shapes_data):
    result = CliRunner().invoke(app, ["data", "preview", str(preview_config), "--n", "3", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    samples = load_samples(shapes_data / "train_mixed.jsonl", limit=3)
    assert len(rows) == 3
    for row, sample in zip(rows, samples):
        assert row["labelled_text"] == " " + sample.answers[0]  # the glued space travels with the answer
        assert row["prompt_text"].endswith("ASSISTANT:")
        assert row["n_image_tokens"] == IMAGE_TOKENS["llava"] and row["n_answer_tokens"] >= 1
        assert row["n_prompt_tokens"] + row["n_image_tokens"] + row["n_answer_tokens"] == row["n_tokens"]
        assert row["truncation_cuts_tokens"] == 0 and row["skipped"] is None


def test_rich_preview_highlights_the_answer_and_says_what_truncation_cuts(preview_config, shapes_data):
    from rich.console import Console

    from vlmtune.config import load_config
    from vlmtune.data.preview import preview_split, render_preview
    from vlmtune.model.load import load_processor_only

    cfg = load_config(preview_config, ["data.max_length=20"])
    loaded = load_processor_only(cfg.model)
    row = next(preview_split(cfg, "val", 1, *loaded))
    answer = load_samples(shapes_data / "val_vqa.jsonl", limit=1)[0].answers[0]
    assert [row.text[a:b] for a, b in row.labelled] == [" " + answer]
    console = Console(record=True, width=120)
    console.print(render_preview(row))
    shown = console.export_text()
    assert "ASSISTANT: " + answer in shown and "training skips it: image tokens cut by max_length" in shown
    assert f"image {IMAGE_TOKENS['llava']}" in shown
    from vlmtune.errors import ConfigError

    with pytest.raises(ConfigError, match="--split must be train, val or test"):
        next(preview_split(cfg, "nope", 1, *loaded))
