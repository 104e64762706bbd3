"""``compare --ray`` without a cluster: the grid's ``ray:`` section, the progress board and
table, and the one-line install hint when Ray is missing (fast; no Ray started)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rich.console import Console

from vlmtune.compare.grid import RaySpec, load_grid
from vlmtune.compare.progress import Board, progress_table
from vlmtune.errors import ConfigError

GRID = """\
name: g
base: {model: {path: m}, data: {train: t.jsonl}}
variants:
  - {name: a}
"""


def _grid(tmp_path, extra: str = ""):
    path = tmp_path / "grid.yaml"
    path.write_text(GRID + extra)
    return path


def test_ray_section_defaults_and_values(tmp_path):
    assert load_grid(_grid(tmp_path)).ray == RaySpec()
    spec = load_grid(_grid(tmp_path, "ray:\n  address: 10.0.0.1:6379\n  gpus_per_variant: 0.5\n"
                                     "  cpus_per_variant: 4\n  max_retries: 1\n")).ray
    assert spec == RaySpec(address="10.0.0.1:6379", cpus_per_variant=4, gpus_per_variant=0.5, max_retries=1)


@pytest.mark.parametrize("extra, expected", [
    ("ray:\n  gpus: 1\n", r"grid.yaml:6: ray.gpus: unknown key \(known: address, cpus_per_variant"),
    ("ray:\n  cpus_per_variant: -1\n", r"grid.yaml:6: ray.cpus_per_variant: must be a number >= 0, got -1"),
    ("ray:\n  max_retries: 1.5\n", r"grid.yaml:6: ray.max_retries: must be a whole number >= 0"),
    ("ray: local\n", r"grid.yaml:5: ray: must be a mapping"),
])
def test_ray_section_errors_are_located(tmp_path, extra, expected):
    with pytest.raises(ConfigError, match=expected):
        load_grid(_grid(tmp_path, extra))


def test_board_counts_attempts_and_the_table_shows_states():
    board = Board(["a", "b", "c"])
    assert board.start("a", pid=10, node="n1") == 1
    board.update("a", "training", step=3, total=8)
    assert board.start("b", pid=11, node="n1") == 1
    board.update("b", "failed", error="t.jsonl: dataset file not found")
    assert board.start("a", pid=12, node="n2") == 2  # a retry after the worker died
    console = Console(width=200, record=True)
    console.print(progress_table("g", board.snapshot()))
    text = console.export_text()
    assert "queued" in text and "failed" in text and "t.jsonl: dataset file not found" in text
    board.update("a", "training", step=5)
    assert board.snapshot()["a"] == {"state": "training", "attempt": 2, "pid": 12, "node": "n2", "step": 5,
                                     "total": 8, "error": None}


def test_without_ray_the_flag_says_how_to_install_it(tmp_path):
    code = "import sys; sys.modules['ray'] = None; from vlmtune.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "compare", str(_grid(tmp_path)), "--ray"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --ray needs Ray: pip install 'vlmtune[ray]' (or pip install 'ray[tune]>=2.9')"
