"""The report built from fake run dirs: table, plots, samples, verdict, self-containment."""

from __future__ import annotations

import base64
import re
import shutil
from html import unescape
from html.parser import HTMLParser

import pytest

from vlmtune.report import build_report
from vlmtune.report.read import load_grid_runs
from vlmtune.report.summary import summarize
from vlmtune.report.table import fmt_bytes, fmt_count, fmt_seconds, table_rows

PNG = b"\x89PNG\r\n\x1a\n"


class _Tables(HTMLParser):
    """Collect tables (rows of cell texts) and img srcs from HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> _Tables:
    parser = _Tables()
    parser.feed(html)
    return parser


def test_formatting_helpers():
    assert fmt_bytes(512) == "512 B" and fmt_bytes(1.5 * 2**30) == "1.5 GiB" and fmt_bytes(None) == "—"
    assert fmt_count(200_000) == "200k" and fmt_count(12) == "12"
    assert fmt_seconds(42) == "42 s" and fmt_seconds(3725) == "1h 02m"


def test_table_has_every_variant_and_column(fake_grid):
    header, rows = table_rows(summarize(load_grid_runs(fake_grid)))
    assert header == ["variant", "method", "trainable params", "grounding IoU", "grounding format",
                      "general Δ (vqa exact match)", "peak memory", "train time", "train samples/s", "MFU",
                      "size on disk", "latency"]
    by = {r[0]: dict(zip(header, r)) for r in rows}
    assert list(by) == ["baseline", "3-shot", "lora-r8", "lora-r16", "qlora-r16", "full"]  # grid order
    assert by["baseline"]["method"] == "untuned" and by["3-shot"]["method"] == "3-shot"
    assert by["qlora-r16"]["method"] == "QLoRA r=16" and by["lora-r16"]["trainable params"] == "200k (1.7%)"
    assert by["baseline"]["general Δ (vqa exact match)"].startswith("ref ")
    assert by["full"]["general Δ (vqa exact match)"].startswith("-0.")
    assert re.fullmatch(r"0\.\d+ ± 0\.\d+", by["lora-r16"]["grounding IoU"])
    assert by["full"]["grounding format"] == "0.75"
    assert by["qlora-r16"]["peak memory"] == "512.0 MiB" and by["baseline"]["peak memory"] == "—"
    assert by["full"]["size on disk"].startswith("model ") and by["lora-r8"]["size on disk"].startswith("adapter ")
    assert by["full"]["train time"] == "2m 22s" and by["full"]["latency"] == "0.06 s"
    assert by["full"]["MFU"] == "42%" and by["lora-r8"]["MFU"] == "—"  # runs from before MFU: a dash


def test_html_is_self_contained_and_complete(built_report):
    html = built_report["html"].read_text()
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    parsed = parse(html)
    results = parsed.tables[0]
    assert results[0][:3] == ["variant", "method", "trainable params"] and len(results) == 7
    assert all(src.startswith("data:image/png;base64,") for src in parsed.images)
    plots = [s for s in parsed.images if base64.b64decode(s.split(",", 1)[1]).startswith(PNG)]
    assert len(plots) == len(parsed.images) >= 4 + 6  # 4 plots + 6 thumbnails
    answers = parsed.tables[1]
    assert answers[0] == ["variant", "answer", "score"] and answers[1][0] == "reference"
    assert [r[0] for r in answers[2:]] == ["untuned", "3-shot", "LoRA r=8", "LoRA r=16", "QLoRA r=16", "full"]


def test_verdict_cites_the_story(built_report):
    html = built_report["html"].read_text()
    verdict = html.split('id="verdict"')[1].split("</ul>")[0]
    assert "full scores best: IoU" in verdict
    assert "full beats LoRA r=16 by" in verdict and "falls short" in verdict
    assert "QLoRA r=16 is within noise of LoRA r=16" in verdict and "48% of its peak memory" in verdict
    assert "Format compliance fell from 0.95 to 0.75 for full." in verdict
    assert "full forgets: general exact match fell by" in verdict
    assert "full beats a constant answer ('[10, 10, 30, 30]' (the median training box) to every item: IoU" in \
        unescape(verdict)


def test_prior_is_a_note_and_a_dotted_line(built_report, fake_grid):
    md = built_report["md"].read_text()
    assert re.search(r"Constant-answer prior: answering '\[10, 10, 30, 30\]' \(the median training box\) "
                     r"to every test item scores IoU 0\.2\d* ± 0\.0\d+", md)
    assert "dotted: one constant answer to every item (the prior)" in md


def test_markdown_links_existing_pngs(built_report, fake_grid):
    md = built_report["md"].read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"metric-vs-params-grounding.png", "metric-vs-memory-grounding.png", "loss-curves.png",
            "forgetting.png"} <= set(links)
    for link in links:
        assert (fake_grid / link).read_bytes().startswith(PNG), link
    assert "| variant | method | trainable params |" in md
    assert "Format compliance fell from 0.95 to 0.75 for full." in md
    assert "<\\|user\\|>" in md  # pipes in outputs do not break the tables


def test_partial_grid_still_reports(fake_grid, tmp_path):
    grid = tmp_path / "g"
    shutil.copytree(fake_grid, grid)
    for name in ("3-shot", "full"):
        (grid / name / "metrics.json").unlink()
        (grid / name / "predictions.jsonl").unlink()
    shutil.rmtree(grid / "qlora-r16")
    paths = build_report(grid)
    md = paths["md"].read_text()
    assert "Not evaluated yet (no metrics.json): 3-shot, full." in md
    assert "QLoRA" not in md and "full beats" not in md
    assert "LoRA r=16 scores best" in md


def test_report_without_baseline_or_general_set(fake_grid, tmp_path):
    grid = tmp_path / "g"
    shutil.copytree(fake_grid, grid, ignore=shutil.ignore_patterns("baseline", "3-shot", "grid.yaml"))
    paths = build_report(grid)
    html = paths["html"].read_text()
    assert "general Δ" in html and "forgets" not in html and "untuned baseline" not in html
    assert "full beats LoRA r=16 by" in html


def test_not_a_grid_dir_is_a_clear_error(tmp_path):
    from vlmtune.errors import RunDirError

    with pytest.raises(RunDirError, match="no run directories"):
        build_report(tmp_path)
    with pytest.raises(RunDirError, match="no such grid directory"):
        build_report(tmp_path / "missing")


def test_cli_report_rebuilds(fake_grid, tmp_path):
    from typer.testing import CliRunner

    from vlmtune.cli import app

    grid = tmp_path / "g"
    shutil.copytree(fake_grid, grid)
    (grid / "report.html").unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["report", str(grid)])
    assert result.exit_code == 0, result.output
    assert (grid / "report.html").is_file() and (grid / "report.md").is_file()


def test_mix_sweep_variants_get_their_own_labels(fake_grid, tmp_path):
    """A forgetting sweep: lora-r16 copied with data.mix_general 0.3; each ratio is told apart."""
    import yaml

    grid = tmp_path / "g"
    shutil.copytree(fake_grid, grid)
    shutil.copytree(grid / "lora-r16", grid / "mix-0.3")
    config = yaml.safe_load((grid / "mix-0.3" / "config.yaml").read_text())
    config["name"], config["data"]["mix_general"] = "mix-0.3", 0.3
    config["data"]["general"] = "general.jsonl"  # as vlmtune writes it: a mix names its general set
    (grid / "mix-0.3" / "config.yaml").write_text(yaml.safe_dump(config))
    labels = {r.name: r.label for r in load_grid_runs(grid)}
    assert labels["lora-r16"] == "LoRA r=16" and labels["mix-0.3"] == "LoRA r=16 + 30% general"
    view = summarize(load_grid_runs(grid))
    assert view.general_delta("mix-0.3") is not None  # a bar in the forgetting plot


def test_a_run_that_stopped_early_is_not_taken_for_untuned(fake_grid, tmp_path):
    """Outside a grid record, a run with a training log but no resources.json (stopped by a
    NaN loss, say) is a trained variant, never the untuned baseline."""
    grid = tmp_path / "g"
    shutil.copytree(fake_grid, grid, ignore=shutil.ignore_patterns("grid.yaml", "baseline"))
    (grid / "full" / "resources.json").unlink()
    runs = {r.name: r for r in load_grid_runs(grid)}
    assert runs["full"].trains and runs["full"].kind == "full"
    assert runs["3-shot"].kind == "shots"


def test_terminal_summary_fits_80_columns_without_breaking_words(fake_grid):
    from rich.console import Console

    from vlmtune.compare.run import summary_table

    names = sorted(p.name for p in fake_grid.iterdir() if (p / "config.yaml").is_file())
    for width in (80, 200):
        console = Console(width=width, record=True)
        console.print(summary_table(fake_grid, {n: "done" for n in names}, width=width))
        text = console.export_text()
        assert max(len(line) for line in text.splitlines()) <= width
        for name in names:  # every variant's name whole, on one line
            assert any(name in line for line in text.splitlines()), (name, text)
    narrow = Console(width=80, record=True)
    narrow.print(summary_table(fake_grid, width=80))
    wide = Console(width=200, record=True)
    wide.print(summary_table(fake_grid, width=200))
    texts = [console.export_text() for console in (narrow, wide)]
    assert max(len(line) for line in texts[0].splitlines()) <= 80
    columns = [text.splitlines()[1].count("┳") + 1 for text in texts]
    assert columns[0] < columns[1]  # key columns only at 80
