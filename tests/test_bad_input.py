"""The bad-input corpus: each mistake gives one clear message naming the file, line and
field, exit status 2, no traceback, and nothing half-written."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from vlmtune import cli


def run_cli(args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["vlmtune", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    return exc.value.code, " ".join((captured.err + captured.out).split())


@pytest.fixture
def setup(tmp_path, tiny_factory, shapes_data):
    """A valid config and dataset to break one thing at a time."""
    model = tiny_factory("qwen2_vl")
    lines = (shapes_data / "train_vqa.jsonl").read_text().splitlines()[:6]
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    samples = [json.loads(line) for line in lines]
    for s in samples:
        for image in s["images"]:
            (data / image).write_bytes((shapes_data / image).read_bytes())

    def write(rows, name="train.jsonl"):
        path = data / name
        path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
        return path

    write(samples, "good.jsonl")

    def config(**changes):
        cfg = {"name": "bad", "model": {"path": str(model)}, "method": {"kind": "lora", "r": 4},
               "data": {"train": str(data / "good.jsonl")},
               "train": {"max_steps": 2, "batch_size": 2, "out_dir": str(tmp_path / "runs")}}
        for key, value in changes.items():
            section, _, field = key.partition("__")
            cfg.setdefault(section, {})
            if field:
                cfg[section][field] = value
            else:
                cfg[section] = value
        path = tmp_path / "cfg.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return {"samples": samples, "write": write, "config": config, "run": tmp_path / "runs" / "bad",
            "model": model, "data": data, "tmp": tmp_path}


def _sample_case(mutate):
    def case(env):
        rows = [dict(s) for s in env["samples"]]
        rows[2] = mutate(json.loads(json.dumps(rows[2])), env)
        return ["train", env["config"](data__train=str(env["write"](rows)))]
    return case


def _missing_image(s, env):
    s["images"] = ["images/nope.png"]
    return s


def _corrupt_image(s, env):
    (env["data"] / "images" / "corrupt.png").write_bytes(b"\x89PNG not really")
    s["images"] = ["images/corrupt.png"]
    return s


def _escaping(s, env):
    s["images"] = ["../../etc/passwd"]
    return s


def _no_assistant(s, env):
    s["messages"] = s["messages"][:1]
    return s


def _empty_answer(s, env):
    s["messages"][1]["content"] = [{"type": "text", "text": "  "}]
    return s


def _extra_marker(s, env):
    s["messages"][0]["content"].insert(0, {"type": "image"})
    return s


def _dup_id(s, env):
    s["id"] = env["samples"][0]["id"]
    return s


def _invalid_json(env):
    rows = [json.dumps(s) for s in env["samples"]]
    rows[2] = rows[2][:-5]
    return ["train", env["config"](data__train=str(env["write"](rows)))]


def _too_long(env):
    return ["train", env["config"](data__max_length=10)]


def _unknown_family(env):
    weird = env["tmp"] / "weird"
    weird.mkdir()
    (weird / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return ["train", env["config"](model={"path": str(weird)})]


def _remote_code(env):
    remote = env["tmp"] / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"model_type": "my_vlm", "auto_map": {
        "AutoConfig": "configuration_my_vlm.MyConfig"}}))
    return ["train", env["config"](model={"path": str(remote)})]


def _vocab_mismatch(env):
    other = env["tmp"] / "mismatch"
    other.mkdir()
    for f in env["model"].iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    config = json.loads((other / "config.json").read_text())
    config["text_config"]["vocab_size"] = 100
    (other / "config.json").write_text(json.dumps(config))
    import torch
    from safetensors.torch import load_file, save_file
    weights = load_file(str(other / "model.safetensors"))
    for key in list(weights):
        if key.endswith(("embed_tokens.weight", "lm_head.weight")):
            weights[key] = weights[key][:100].clone()
    save_file(weights, str(other / "model.safetensors"))
    assert torch.is_tensor(next(iter(weights.values())))
    return ["train", env["config"](model={"path": str(other)})]


def _run_exists(env):
    env["run"].mkdir(parents=True)
    (env["run"] / "config.yaml").write_text("name: bad\n")
    return ["train", env["config"]()]


def _unwritable(env):
    blocker = env["tmp"] / "a-file"
    blocker.write_text("x")
    return ["train", env["config"](train__out_dir=str(blocker / "runs"))]


def _eval_no_refs(env):
    rows = [dict(s) for s in env["samples"]]
    rows[1] = {k: v for k, v in rows[1].items() if k != "answers"}
    rows[1]["messages"] = rows[1]["messages"][:1]
    return ["eval", env["config"](eval={"test": str(env["write"](rows, "test.jsonl"))}), "--out", env["tmp"] / "ev"]


CASES = {
    "missing image": (_sample_case(_missing_image), ["train.jsonl:3", "images[0]", "image not found"]),
    "corrupt image": (_sample_case(_corrupt_image), ["train.jsonl:3", "images[0]", "cannot read image"]),
    "path escapes root": (_sample_case(_escaping), ["train.jsonl:3", "images[0]", "escapes the dataset root"]),
    "invalid JSON line": (_invalid_json, ["train.jsonl:3", "invalid JSON"]),
    "missing assistant turn": (_sample_case(_no_assistant), ["train.jsonl:3", "messages", "no assistant turn"]),
    "empty answer": (_sample_case(_empty_answer), ["train.jsonl:3", "messages", "empty answer"]),
    "more <image> than images": (_sample_case(_extra_marker), ["train.jsonl:3", "messages",
                                                                "2 image placeholder(s) but 1 image"]),
    "duplicate id": (_sample_case(_dup_id), ["train.jsonl:3", "id", "duplicate id"]),
    "too long for max_length": (_too_long, ["good.jsonl", "no sample fits data.max_length=10"]),
    "missing model directory": (lambda env: ["train", env["config"](model={"path": str(env["tmp"] / "no-model")})],
                                ["model.path", "no-model", "there is no local directory"]),
    "unknown family": (_unknown_family, ["model_type", "unsupported model_type 'bert'", "qwen2_vl"]),
    "remote code without flag": (_remote_code, ["remote", "--trust-remote-code"]),
    "tokenizer/processor mismatch": (_vocab_mismatch, ["mismatch", "tokenizer", "embedding has 100 rows"]),
    "unknown config key": (lambda env: ["train", env["config"](), "train.max_stpes=3"],
                           ["train.max_stpes: unknown key; did you mean 'max_steps'?"]),
    "wrong type": (lambda env: ["train", env["config"](), "train.batch_size=two"],
                   ["cfg.yaml", "train.batch_size: must be an integer, got 'two'"]),
    "out-of-range value": (lambda env: ["train", env["config"](method__r=0)], ["cfg.yaml:", "method.r: must be >= 1, got 0"]),
    "invalid YAML": (lambda env: ["train", _write(env, "bad.yaml", "name: [\n")], ["bad.yaml", "invalid YAML"]),
    "run dir exists": (_run_exists, ["run directory exists", "--overwrite"]),
    "unwritable output dir": (_unwritable, ["cannot create run directory"]),
    "eval set without references": (_eval_no_refs, ["test.jsonl:2", "answers", "no reference answer"]),
    "missing dataset file": (lambda env: ["train", env["config"](data__train=str(env["tmp"] / "none.jsonl"))],
                             ["none.jsonl", "dataset file not found"]),
    "unknown metric": (lambda env: ["score", env["write"]([{"id": "a", "prediction": "x", "answers": ["x"]}],
                                                          "p.jsonl"), "--metrics", "bleu9"],
                       ["unknown metric 'bleu9'", "known metrics"]),
}


def _write(env, name, text):
    path = env["tmp"] / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_input_is_refused_clearly(kind, setup, capsys, monkeypatch):
    build, expected = CASES[kind]
    args = build(setup)
    code, message = run_cli(args, capsys, monkeypatch)
    assert code == 2, message
    assert "Traceback" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    if kind != "run dir exists":
        assert not setup["run"].exists(), "a failed run left a run directory behind"


def test_adapter_from_another_base(setup, tiny_factory, capsys, monkeypatch):
    code, message = run_cli(["train", setup["config"]()], capsys, monkeypatch)
    assert code == 0, message
    other = tiny_factory("llava")
    image = setup["data"] / setup["samples"][0]["images"][0]
    code, message = run_cli(["predict", "--model", other, "--adapter", setup["run"] / "adapter", "--image", image,
                             "--prompt", "hi"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in message
    assert "vlmtune_base.json" in message and "trained on another base model" in message


def test_disk_full_while_saving_keeps_earlier_checkpoints(setup, capsys, monkeypatch):
    import errno

    from vlmtune.train import checkpoint

    real = checkpoint.save_file
    calls = {"n": 0}

    def full_disk(tensors, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:  # the 1st checkpoint's two files fit; the 2nd checkpoint does not
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    code, message = run_cli(["train", setup["config"](train__checkpoint_every=1)], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in message
    assert "could not save the checkpoint: No space left on device" in message
    folder = setup["run"] / "checkpoints"
    assert [p.name for p in folder.iterdir()] == ["step-000001"]  # no torn or temporary directory
    assert checkpoint.is_complete(folder / "step-000001")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(setup, capsys, monkeypatch):
    import torch

    from vlmtune.train import loop as train_module

    real = train_module.token_loss_sum
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        loss = real(model, batch)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(train_module, "token_loss_sum", poisoned)
    code, message = run_cli(["train", setup["config"](train__checkpoint_every=1, train__max_steps=4)],
                            capsys, monkeypatch)
    assert code == 2 and "diverged at step 3: loss is nan" in message and "Traceback" not in message
    assert "marked failed" in message and "step-000002" in message
    kept = sorted(p.name for p in (setup["run"] / "checkpoints").iterdir())
    assert kept == ["step-000001", "step-000002"]
    from safetensors.torch import load_file
    weights = load_file(str(setup["run"] / "checkpoints" / "step-000002" / "trainable.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_checks_after_loading_name_the_config_line_or_the_override(setup, tiny_factory, capsys, monkeypatch):
    """Some settings can only be judged once the model is loaded (Gemma 3 cannot pack): the
    message still points at the config's line, or at the override that set the key."""
    gemma = str(tiny_factory("gemma3"))
    cfg = setup["config"](model__path=gemma, train__packing=True)
    line = next(i for i, text in enumerate(cfg.read_text().splitlines(), 1) if text.strip() == "packing: true")
    code, message = run_cli(["train", cfg], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in message
    assert f"{cfg}:{line}: train.packing: not supported for Gemma3" in message, message
    code, message = run_cli(["train", setup["config"](model__path=gemma), "train.packing=true"], capsys, monkeypatch)
    assert code == 2 and "command-line override 'train.packing=true': train.packing: not supported" in message
    assert not setup["run"].exists()
