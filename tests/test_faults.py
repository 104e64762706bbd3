"""The fault corpus: what a careless user or a bad machine does, and what vlmtune keeps.

Each case: exit status 2, one line matched, no traceback, and nothing deleted or
half-written. Most cases never train; the few that need a finished run share one
(``trained``), copied per test. Cost: 41 tests, ~75 s on 2 shared cores (34 s of it the
two real concurrent trains, ~20 s building the shared tiny model and run).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from test_bad_input import run_cli, setup  # noqa: F401 - the shared bad-input fixture

from vlmtune.ownership import LOCK, MARKER, DirLock, marker_kind


def _tree(path):
    """Every file under ``path`` with its bytes (to assert that nothing changed)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != LOCK}


def _ok(code, message):
    assert code == 0, message


def _refused(code, message, *parts):
    assert code == 2, message
    assert "Traceback" not in message, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_factory, shapes_data):
    """One finished LoRA run (2 steps, checkpoints at 1 and 2), trained once per module."""
    from vlmtune.config import load_config
    from vlmtune.train import train

    root = tmp_path_factory.mktemp("trained")
    cfg = {"name": "run", "model": {"path": str(tiny_factory("qwen2_vl"))}, "method": {"kind": "lora", "r": 4},
           "data": {"train": str(shapes_data / "train_vqa.jsonl"), "val": str(shapes_data / "val_vqa.jsonl")},
           "train": {"max_steps": 2, "batch_size": 2, "checkpoint_every": 1, "out_dir": str(root / "runs")},
           "eval": {"test": str(shapes_data / "test_vqa.jsonl"), "max_new_tokens": 2, "max_samples": 2}}
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = train(load_config(path))
    return {"run": run, "config": path}


@pytest.fixture
def run_copy(trained, tmp_path):
    """A private copy of the trained run (tests may break it) and a config pointing at it."""
    run = tmp_path / "runs" / "run"
    shutil.copytree(trained["run"], run)
    cfg = yaml.safe_load(trained["config"].read_text())
    cfg["train"]["out_dir"] = str(tmp_path / "runs")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["train"]["out_dir"] = cfg["train"]["out_dir"]  # as if trained here (resume compares configs)
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    return run, path


# --------------------------------------------------------------------------------------
# 1. Nothing outside a run is ever deleted
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["equal", "inside"])
def test_merge_out_inside_the_run_is_refused(run_copy, where, capsys, monkeypatch):
    run, _ = run_copy
    before = _tree(run)
    out = run if where == "equal" else run / "merged"
    code, message = run_cli(["merge", "--run", run, "--out", out, "--overwrite"], capsys, monkeypatch)
    _refused(code, message, "--out must be outside", str(run))
    assert _tree(run) == before


def test_merge_overwrite_only_replaces_a_merged_model(run_copy, capsys, monkeypatch):
    run, _ = run_copy
    mine = run.parent / "mine"
    mine.mkdir()
    (mine / "important.txt").write_text("keep me")
    code, message = run_cli(["merge", "--run", run, "--out", mine, "--overwrite"], capsys, monkeypatch)
    _refused(code, message, "refusing to delete", "vlmtune did not create this directory")
    assert (mine / "important.txt").read_text() == "keep me"
    merged = run.parent / "merged"
    _ok(*run_cli(["merge", "--run", run, "--out", merged], capsys, monkeypatch))
    assert marker_kind(merged) == "merged model" and (merged / "model.safetensors").is_file()
    _ok(*run_cli(["merge", "--run", run, "--out", merged, "--overwrite"], capsys, monkeypatch))
    code, message = run_cli(["merge", "--run", run, "--out", run.parent], capsys, monkeypatch)
    _refused(code, message, "--out must be outside")  # a folder around the run


def test_overwrite_refuses_a_folder_vlmtune_did_not_create(setup, capsys, monkeypatch):  # noqa: F811
    """Issue 14 #2: a project folder that merely holds a config.yaml is not a run."""
    project = setup["tmp"] / "proj"
    (project / "src").mkdir(parents=True)
    (project / "config.yaml").write_text("name: proj\n")
    (project / "important.txt").write_text("keep me")
    before = _tree(project)
    cfg = setup["config"](name="proj", train__out_dir=str(setup["tmp"]))
    code, message = run_cli(["train", cfg, "--overwrite"], capsys, monkeypatch)
    _refused(code, message, "refusing to delete", "vlmtune did not create this directory", MARKER)
    assert _tree(project) == before and (project / "src").is_dir()


def test_overwrite_refuses_another_kind(setup, capsys, monkeypatch):  # noqa: F811
    grid = setup["run"]
    grid.mkdir(parents=True)
    (grid / MARKER).write_text(json.dumps({"kind": "grid"}))
    (grid / "report.md").write_text("results")
    code, message = run_cli(["train", setup["config"](), "--overwrite"], capsys, monkeypatch)
    _refused(code, message, "it is a vlmtune grid directory, not a run")
    assert (grid / "report.md").read_text() == "results"


def _hold_lock(path):
    """Another process holding the directory's lock until killed."""
    code = ("import sys, time; from vlmtune.ownership import DirLock; DirLock(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("args", [["--overwrite"], ["--resume"]])
def test_second_writer_is_refused_with_the_holders_pid(run_copy, args, capsys, monkeypatch):
    """Issue 14 #3: a live run is never deleted or resumed under its writer; a killed
    holder's lock is released by the kernel, so a rerun then works."""
    run, cfg = run_copy
    before = _tree(run)
    holder = _hold_lock(run)
    try:
        code, message = run_cli(["train", cfg, *args], capsys, monkeypatch)
        _refused(code, message, f"in use by another vlmtune process (PID {holder.pid})")
        code, message = run_cli(["eval", "--run", run], capsys, monkeypatch)
        _refused(code, message, f"PID {holder.pid}")
        assert _tree(run) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with DirLock(run):  # kill -9 released it
        pass


def test_two_trains_at_once_one_wins(setup, capsys, monkeypatch):  # noqa: F811
    """Two real `train --overwrite` processes of the same run: the second is refused while
    the first runs (paused after its first logged step, so the overlap is certain), and the
    first finishes with every file in place."""
    cfg = setup["config"](train__max_steps=2, train__log_every=1)
    paused, go = setup["tmp"] / "paused", setup["tmp"] / "go"
    driver = ("import sys, time, pathlib; import vlmtune.train.logs as L; from vlmtune import cli\n"
              "record = L.RunLog.record\n"
              "def held(self, step, values):\n"
              "    record(self, step, values)\n"
              f"    pathlib.Path({str(paused)!r}).touch()\n"
              f"    while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)\n"
              "L.RunLog.record = held\n"
              "sys.argv = ['vlmtune', *sys.argv[1:]]; cli.main()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    args = ["train", str(cfg), "--overwrite"]
    first = subprocess.Popen([sys.executable, "-c", driver, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
    try:
        while not paused.exists():
            assert first.poll() is None, first.stdout.read()
            time.sleep(0.1)
        code, message = run_cli(args, capsys, monkeypatch)
        _refused(code, message, f"in use by another vlmtune process (PID {first.pid})")
    finally:
        go.touch()
    out = first.communicate(timeout=600)[0]
    assert first.returncode == 0, out
    for name in ("metrics.jsonl", "data.json", "resources.json", "adapter/adapter_model.safetensors"):
        assert (setup["run"] / name).is_file(), name


def test_convert_copy_never_copies_files_outside_the_source_tree(tmp_path, capsys, monkeypatch):
    """Issue 14 #4: `--images-outside copy` with ../../etc/passwd."""
    src = tmp_path / "a" / "b" / "src.jsonl"
    src.parent.mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    rel = os.path.relpath(secret, src.parent)
    rows = [{"image": rel, "conversations": [{"from": "human", "value": "<image>Q"}, {"from": "gpt", "value": "A"}]}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out" / "train.jsonl"
    code, message = run_cli(["data", "convert", src, out, "--format", "llava", "--images-outside", "copy"],
                            capsys, monkeypatch)
    _refused(code, message, "src.jsonl:1", "outside the source dataset's folder")
    assert not out.exists() and not any((tmp_path / "out").rglob("*secret*"))


# --------------------------------------------------------------------------------------
# 3. One line for every fault (no training: each is refused before or while loading)
# --------------------------------------------------------------------------------------


def _rows_with(env, index, text=None, raw=None):
    """The dataset with line ``index + 1`` replaced by ``raw`` bytes (or its JSON text)."""
    lines = [json.dumps(s).encode() for s in env["samples"]]
    lines[index] = raw if raw is not None else text.encode()
    path = env["data"] / "train.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _invalid_utf8(env):
    line = json.dumps(env["samples"][2]).encode().replace(b"\"id\"", b"\"id\xff\"", 1)
    return ["train", env["config"](data__train=str(_rows_with(env, 2, raw=line)))]


def _copy_model(env, name, drop=(), truncate=None):
    folder = env["tmp"] / name
    shutil.copytree(env["model"], folder)
    for pattern in drop:
        for path in folder.glob(pattern):
            path.unlink()
    if truncate:
        data = (folder / truncate).read_bytes()
        (folder / truncate).write_bytes(data[: len(data) // 3])
    return folder


def _bomb(env, pixels=(20_000, 10_000)):
    """A PNG whose header claims more pixels than PIL's bomb limit (a few KiB on disk)."""
    from PIL import Image

    path = env["data"] / "images" / "bomb.png"
    Image.new("1", pixels).save(path)
    sample = json.loads(json.dumps(env["samples"][2]))
    sample["images"] = ["images/bomb.png"]
    return _rows_with(env, 2, text=json.dumps(sample))


def _big_image(env, side=100):
    from PIL import Image

    path = env["data"] / "images" / "big.png"
    Image.new("RGB", (side, side), (200, 10, 10)).save(path)
    sample = json.loads(json.dumps(env["samples"][2]))
    sample["images"] = ["images/big.png"]
    return _rows_with(env, 2, text=json.dumps(sample))


def _corrupt_run_config(env, *command):
    run = env["run"]
    run.mkdir(parents=True)
    (run / MARKER).write_text(json.dumps({"kind": "run"}))
    (run / "config.yaml").write_text("name: bad\nmodel: {path: [unclosed\n")
    (run / "adapter").mkdir()
    return [part(env) if callable(part) else part for part in command]


def _not_an_image(env):
    path = env["tmp"] / "notes.png"
    path.write_text("these are my notes, not a picture")
    return ["predict", "--model", env["model"], "--image", path, "--prompt", "hi"]


def _duplicate_scores(env):
    rows = [{"id": "a", "prediction": "x", "answers": ["x"]}, {"id": "b", "prediction": "y", "answers": ["x"]},
            {"id": "a", "prediction": "x", "answers": ["x"]}]
    return ["score", env["write"](rows, "preds.jsonl"), "--metrics", "exact_match"]


FAULTS = {
    "invalid UTF-8 in JSONL": (_invalid_utf8, [r"train\.jsonl:3: not UTF-8 text \(byte 0xff"]),
    "YAML error in an override": (lambda env: ["train", env["config"](), "train.lr=: a"],
                                  [r"override 'train\.lr=: a': the value is not valid YAML"]),
    "unclosed bracket in an override": (lambda env: ["train", env["config"](), "method.targets=[q_proj"],
                                        [r"override 'method\.targets=\[q_proj': the value is not valid YAML"]),
    "bad method.targets": (lambda env: ["train", env["config"](method__targets=["q_proj", "nope"])],
                           [r"cfg\.yaml:\d+: method\.targets: no linear layer named \['nope'\]",
                            r"layers there: .*q_proj"]),
    "truncated safetensors": (lambda env: ["train", env["config"](model={"path": str(_copy_model(
        env, "trunc", truncate="model.safetensors"))})], [r"trunc: model\.path: cannot load the model weights"]),
    "missing safetensors": (lambda env: ["train", env["config"](model={"path": str(_copy_model(
        env, "noweights", drop=["*.safetensors"]))})], [r"noweights: model\.path: cannot load the model weights"]),
    "model without tokenizer files": (lambda env: ["train", env["config"](model={"path": str(_copy_model(
        env, "notok", drop=["tokenizer*"]))})], [r"notok: model\.path: no tokenizer files"]),
    "corrupt run config (eval --run)": (lambda env: _corrupt_run_config(env, "eval", "--run", lambda e: e["run"]),
                                        [r"corrupt run config: .*config\.yaml:\d+: invalid YAML"]),
    "corrupt run config (merge)": (lambda env: _corrupt_run_config(
        env, "merge", "--run", lambda e: e["run"], "--out", lambda e: e["tmp"] / "merged"),
        [r"corrupt run config: .*config\.yaml:\d+: invalid YAML"]),
    "corrupt run config (resume)": (lambda env: _corrupt_run_config(env, "train", lambda e: e["config"](),
                                                                    "--resume"),
                                    [r"corrupt run config: .*config\.yaml:\d+: invalid YAML"]),
    "data synth --n -5": (lambda env: ["data", "synth", "--out", env["tmp"] / "synth", "--n", "-5"],
                          [r"data synth: n must be >= 1, got -5"]),
    "predict with a non-image": (_not_an_image, [r"notes\.png: --image: not a readable image"]),
    "full with every role frozen": (lambda env: ["train", env["config"](
        method={"kind": "full"}, trainable={"vision": False, "projector": False, "language": False})],
        [r"method\.kind: full trains nothing with every role frozen"]),
    "decompression bomb (train)": (lambda env: ["train", env["config"](data__train=str(_bomb(env)))],
                                   [r"train\.jsonl:3: images\[0\]: .*bomb\.png: image is a decompression bomb"]),
    "decompression bomb (predict)": (lambda env: ["predict", "--model", env["model"], "--image",
                                                  env["data"] / "images" / "bomb.png", "--prompt", "hi"]
                                     if _bomb(env) else None, [r"bomb\.png: --image: not a readable image: "
                                                              r"image is a decompression bomb"]),
    "oversized image, policy error": (lambda env: ["train", env["config"](data__train=str(_big_image(env)),
                                                                        data__max_image_pixels=4096,
                                                                        data__oversized_images="error")],
                                      [r"train\.jsonl:3: images\[0\]: .*big\.png: image is 100x100 = 10,000 pixels, "
                                       r"above data\.max_image_pixels=4,096"]),
    "duplicate ids in score": (_duplicate_scores, [r"preds\.jsonl:3: id: duplicate id 'a' \(first on line 1\)"]),
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_fault_is_one_clear_line(kind, setup, capsys, monkeypatch):  # noqa: F811
    import re

    build, patterns = FAULTS[kind]
    args = build(setup)
    before = _tree(setup["tmp"])
    code, message = run_cli(args, capsys, monkeypatch)
    _refused(code, message)
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    assert _tree(setup["tmp"]) == before, "a refused command changed files"
    if "run config" not in kind:
        assert not setup["run"].exists(), "a refused command left a run directory behind"


# --------------------------------------------------------------------------------------
# 2. Divergence is a failure; JSON is always valid; resume falls back
# --------------------------------------------------------------------------------------


def _strict_json(path):
    """Parse as strict JSON (Python's json accepts a bare NaN; the JSON spec and JS do not)."""
    def refuse(name):
        raise ValueError(f"{path}: bare {name}")
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line, parse_constant=refuse) for line in text.splitlines() if line.strip()]
    return json.loads(text, parse_constant=refuse)


def test_a_diverged_run_fails_and_the_report_says_so(setup, capsys, monkeypatch):  # noqa: F811
    """Issue 14 #5: lr=1e6 with clipping saturates the weights: gradient exactly 0, loss flat."""
    cfg = setup["config"](train__lr=1e6, train__max_steps=8, train__log_every=1, data__val=str(setup["data"] /
                                                                                             "good.jsonl"))
    code, message = run_cli(["train", cfg], capsys, monkeypatch)
    _refused(code, message, "training diverged at step", "gradient norm exactly 0 for 3 steps",
             "lower train.lr (now 1e+06)", "marked failed (failed.json)")
    run = setup["run"]
    failed = _strict_json(run / "failed.json")
    assert failed["reason"] == "zero_grad" and not (run / "adapter").exists() and not (run / "resources.json").exists()
    for path in run.glob("*.json*"):
        _strict_json(path)
    from vlmtune.report.read import load_run
    from vlmtune.report.summary import summarize
    from vlmtune.report.table import table_rows

    loaded = load_run(run)
    _, rows = table_rows(summarize([loaded]))
    assert f"FAILED at step {failed['step']}: zero_grad" in rows[0][1]


def test_non_finite_values_never_reach_json(tmp_path):
    from vlmtune.atomic import write_json, write_jsonl

    write_json(tmp_path / "a.json", {"loss": float("nan"), "x": [float("inf"), 1.0]})
    write_jsonl(tmp_path / "b.jsonl", [{"loss": float("-inf")}])
    assert _strict_json(tmp_path / "a.json") == {"loss": None, "x": [None, 1.0]}
    assert _strict_json(tmp_path / "b.jsonl") == [{"loss": None}]


def test_resume_with_no_step_left_writes_valid_json_once(run_copy, capsys, monkeypatch):
    """Issue 14 #6: killed during the final save (adapter half-staged, no resources.json)."""
    run, cfg = run_copy
    shutil.rmtree(run / "adapter")
    (run / "resources.json").unlink()
    (run / ".adapter.x1y2.tmp").mkdir()
    (run / ".adapter.x1y2.tmp" / "adapter_model.safetensors").write_bytes(b"half")
    log_before = (run / "metrics.jsonl").read_text()
    _ok(*run_cli(["train", cfg, "--resume"], capsys, monkeypatch))
    resources = _strict_json(run / "resources.json")
    assert resources["final_train_loss"] is not None and resources["final_val_loss"] is not None
    assert (run / "metrics.jsonl").read_text() == log_before  # no second val_loss line
    assert not list(run.glob(".*.tmp")) and (run / "adapter" / "adapter_model.safetensors").is_file()


def test_resume_falls_back_when_the_newest_checkpoint_does_not_load(run_copy, capsys, monkeypatch):
    """A tampered optimizer.pt whose manifest was rewritten to match: step 2 is complete by its
    manifest but does not load, so the run resumes from step 1 and still finishes."""
    import hashlib

    run, cfg = run_copy
    newest = run / "checkpoints" / "step-000002"
    (newest / "optimizer.pt").write_bytes(b"not a torch file")
    manifest = json.loads((newest / "manifest.json").read_text())
    manifest["files"]["optimizer.pt"] = {"bytes": 16, "sha256": hashlib.sha256(b"not a torch file").hexdigest()}
    (newest / "manifest.json").write_text(json.dumps(manifest))
    code, message = run_cli(["train", cfg, "--resume", "train.max_steps=3"], capsys, monkeypatch)
    _ok(code, message)
    assert "step-000002 does not load" in message and "resumed from" in message and "(step 1)" in message


def test_ctrl_c_says_what_was_kept_and_how_to_resume(run_copy, capsys, monkeypatch):
    from vlmtune.train import loop as train_module

    run, cfg = run_copy

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", interrupted)
    code, message = run_cli(["train", cfg, "--resume", "train.max_steps=4"], capsys, monkeypatch)
    assert code == 130 and "Traceback" not in message
    assert f"interrupted: kept {run} up to its last checkpoint step-000002" in message
    assert f"continue with: vlmtune train {cfg} train.max_steps=4 --resume" in message


def test_skipped_and_shrunk_samples_are_said_on_the_terminal(setup, capsys, monkeypatch):  # noqa: F811
    """Over-long samples and oversized images: one line each, pointing at data.json."""
    path = _big_image(setup, side=100)
    code, message = run_cli(["train", setup["config"](data__train=str(path), data__max_image_pixels=4096,
                                                      train__max_steps=1)], capsys, monkeypatch)
    _ok(code, message)
    assert f"shrank 1 train images to data.max_image_pixels=4,096 (counted in {setup['run'] / 'data.json'})" \
        in message
    assert _strict_json(setup["run"] / "data.json")["train"]["images_shrunk"] == 1
    code, message = run_cli(["train", setup["config"](data__train=str(path), data__max_image_pixels=4096,
                                                      data__oversized_images="skip", train__max_steps=1),
                             "--overwrite"], capsys, monkeypatch)
    _ok(code, message)
    assert "skipped 1 train samples (1 image over data.max_image_pixels); which ones:" in message
    data = _strict_json(setup["run"] / "data.json")["train"]
    assert data["skipped"] == {"image over data.max_image_pixels": 1} and "train.jsonl:3" in data["skipped_where"][0]


# --------------------------------------------------------------------------------------
# 4. The disk: full while checkpointing, read-only outputs
# --------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of ``size`` (root with mount rights); skipped where it cannot be mounted,
    the patched-writer tests below then still cover each error type."""
    mounted = []

    def mount(size: str, *, read_only: bool = False):
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                                               capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root); the patched writers cover these errors")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_disk_full_while_checkpointing_on_a_real_small_disk(setup, small_disk, capsys, monkeypatch):  # noqa: F811
    """A 160 KiB tmpfs: config, data.json and the first checkpoint (~120 KiB) fit; the second
    does not. One line, the first checkpoint intact, no temporary directory left."""
    from vlmtune.train.checkpoint import is_complete

    disk = small_disk("160k")
    cfg = setup["config"](train__out_dir=str(disk), train__checkpoint_every=1, train__max_steps=3)
    code, message = run_cli(["train", cfg], capsys, monkeypatch)
    _refused(code, message, "could not save the", "resume with --resume once there is room")
    checkpoints = disk / "bad" / "checkpoints"
    kept = sorted(p.name for p in checkpoints.iterdir()) if checkpoints.is_dir() else []
    assert all(not name.startswith(".") for name in kept), kept
    assert all(is_complete(checkpoints / name) for name in kept)


@pytest.mark.parametrize("error", ["RuntimeError", "SafetensorError", "OSError"])
def test_disk_full_as_each_library_reports_it(error, setup, capsys, monkeypatch):  # noqa: F811
    """torch.save says RuntimeError('... file write failed'), safetensors SafetensorError,
    Python OSError(ENOSPC): each is one line and the earlier checkpoint stays."""
    import errno

    from safetensors import SafetensorError

    from vlmtune.train import checkpoint
    from vlmtune.train.checkpoint import is_complete

    raised = {"RuntimeError": RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter "
                                           "failed writing file data/0: file write failed"),
              "SafetensorError": SafetensorError("Error while serializing: I/O error: No space left on device "
                                                 "(os error 28)"),
              "OSError": OSError(errno.ENOSPC, "No space left on device")}[error]
    real, calls = checkpoint.torch.save, {"n": 0}

    def full(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:  # the first checkpoint's optimizer + scheduler fit
            raise raised
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", full)
    code, message = run_cli(["train", setup["config"](train__checkpoint_every=1)], capsys, monkeypatch)
    _refused(code, message, "could not save the checkpoint", "the last complete checkpoint",
             "step-000001 is intact")
    folder = setup["run"] / "checkpoints"
    assert [p.name for p in folder.iterdir()] == ["step-000001"] and is_complete(folder / "step-000001")


def _read_only_cases(env, ro, run):
    return {
        "eval": ["eval", "--run", run, "--out", ro / "eval"],
        "merge": ["merge", "--run", run, "--out", ro / "merged"],
        "synth": ["data", "synth", "--out", ro / "synth", "--n", "5"],
        "zoo tiny": ["zoo", "tiny", "qwen2_vl", "--out", ro / "tiny"],
        "score": ["score", env["write"]([{"id": "a", "prediction": "x", "answers": ["x"]}], "p.jsonl"),
                  "--metrics", "exact_match", "--per-sample", ro / "scores.jsonl"],
    }


@pytest.mark.parametrize("command", ["eval", "merge", "synth", "zoo tiny", "score"])
def test_read_only_output_is_one_line(command, run_copy, setup, small_disk, capsys, monkeypatch):  # noqa: F811
    run, _ = run_copy
    ro = small_disk("1m", read_only=True)
    code, message = run_cli(_read_only_cases(setup, ro, run)[command], capsys, monkeypatch)
    _refused(code, message, "Read-only file system")
