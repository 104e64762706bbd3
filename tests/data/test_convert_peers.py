"""Peers' documented formats -> canonical JSONL: LLaMA-Factory (sharegpt, alpaca, v1 parts,
dataset_info.json entries), ms-swift (messages with per-turn loss, query/response/history),
InternVL (jsonl + meta file), LLaVA, OpenAI-style image_url. Sample files are written here
from each peer's documentation (LLaMA-Factory data/README.md and mllm_demo.json; ms-swift
"Custom Dataset"; InternVL "fine-tune on a custom dataset"; LLaVA's instruct format)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from PIL import Image

from vlmtune.data.convert import convert
from vlmtune.data.schema import load_samples
from vlmtune.errors import DataError

IMG, TXT = {"type": "image"}, lambda t: {"type": "text", "text": t}


@pytest.fixture
def root(tmp_path) -> Path:
    for name, colour in (("mllm_demo_data/1.jpg", "red"), ("mllm_demo_data/2.jpg", "blue"),
                         ("images/3.png", "green")):
        (tmp_path / name).parent.mkdir(exist_ok=True, parents=True)
        Image.new("RGB", (16, 12), colour).save(tmp_path / name)
    return tmp_path


def _dump(path: Path, obj, *, lines: bool = False) -> Path:
    text = "".join(json.dumps(o) + "\n" for o in obj) if lines else json.dumps(obj, indent=2)
    path.write_text(text, encoding="utf-8")
    return path


LF_MLLM = [  # LLaMA-Factory data/mllm_demo.json shape: messages role/content + images
    {"messages": [{"content": "<image>Who are they?", "role": "user"},
                  {"content": "They're Kane and Gretzka.", "role": "assistant"},
                  {"content": "What are they doing?<image>", "role": "user"},
                  {"content": "They are celebrating.", "role": "assistant"}],
     "images": ["mllm_demo_data/1.jpg", "mllm_demo_data/2.jpg"]},
]
LF_INFO = {
    "mllm_demo": {"file_name": "mllm_demo.json", "formatting": "sharegpt",
                  "columns": {"messages": "messages", "images": "images"},
                  "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                           "assistant_tag": "assistant"}},
    "alpaca_mm": {"file_name": "alpaca_mm.json",
                  "columns": {"prompt": "instruction", "query": "input", "response": "output",
                              "system": "system", "history": "history", "images": "images"}},
    "custom_sharegpt": {"file_name": "custom.jsonl", "formatting": "sharegpt",
                        "columns": {"messages": "dialog", "images": "pics", "system": "sys"},
                        "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "q",
                                 "assistant_tag": "a"}},
    "hub": {"hf_hub_url": "someone/some-dataset"},
}


def test_llamafactory_dataset_info_entries(root, check_canonical):
    _dump(root / "mllm_demo.json", LF_MLLM)
    _dump(root / "alpaca_mm.json", [
        {"instruction": "<image>What colour is it?", "input": "Answer in one word.", "output": "Green.",
         "system": "Be brief.", "history": [["Hi", "Hello."]], "images": ["images/3.png"]}])
    _dump(root / "custom.jsonl", [{"dialog": [{"speaker": "q", "text": "Colour?"},
                                              {"speaker": "a", "text": "Blue."}],
                                   "pics": ["mllm_demo_data/2.jpg"], "sys": "Short."}], lines=True)
    info = _dump(root / "dataset_info.json", LF_INFO)
    assert convert(f"{info}#mllm_demo", root / "mllm.jsonl") == 1
    (sample,) = check_canonical(root / "mllm.jsonl")
    assert sample["images"] == ["mllm_demo_data/1.jpg", "mllm_demo_data/2.jpg"]
    assert sample["messages"][2]["content"] == [TXT("What are they doing?"), IMG]
    assert sample["answers"] == ["They are celebrating."]

    assert convert(f"{info}#alpaca_mm", root / "alpaca.jsonl", task="vqa") == 1
    (alp,) = check_canonical(root / "alpaca.jsonl")
    assert [m["role"] for m in alp["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert alp["messages"][3]["content"] == [IMG, TXT("What colour is it?\nAnswer in one word.")]
    assert alp["task"] == "vqa" and alp["images"] == ["images/3.png"]

    convert(f"{info}#custom_sharegpt", root / "custom_out.jsonl")
    (custom,) = check_canonical(root / "custom_out.jsonl")
    assert custom["messages"][0] == {"role": "system", "content": [TXT("Short.")]}
    assert custom["messages"][1]["content"] == [IMG, TXT("Colour?")]

    with pytest.raises(DataError, match="hub datasets are not downloaded") as err:
        convert(f"{info}#hub", root / "x.jsonl")
    assert "hub.hf_hub_url" in str(err.value)
    with pytest.raises(DataError, match="choose one as dataset_info.json#NAME"):
        convert(info, root / "x.jsonl")
    with pytest.raises(DataError, match="no entry 'nope'"):
        convert(f"{info}#nope", root / "x.jsonl")
    assert not (root / "x.jsonl").exists()


def test_llamafactory_v1_parts_and_loss_weight(root, check_canonical):
    src = _dump(root / "v1_multimodal_demo.jsonl", [
        {"messages": [
            {"role": "system", "content": [{"type": "text", "value": "Look carefully."}]},
            {"role": "user", "content": [{"type": "image_url", "value": "mllm_demo_data/1.jpg"},
                                         {"type": "text", "value": "Who is this?"}]},
            {"role": "assistant", "content": [{"type": "text", "value": "A player."}], "loss_weight": 0.0},
            {"role": "user", "content": [{"type": "text", "value": "Colour of the shirt?"}]},
            {"role": "assistant", "content": [{"type": "text", "value": "Red."}], "loss_weight": 1.0}]}],
        lines=True)
    assert convert(src, root / "v1.jsonl") == 1
    (sample,) = check_canonical(root / "v1.jsonl")
    assert sample["images"] == ["mllm_demo_data/1.jpg"]
    assert sample["messages"][1]["content"] == [IMG, TXT("Who is this?")]
    assert sample["messages"][2] == {"role": "assistant", "content": [TXT("A player.")], "train": False}
    assert "train" not in sample["messages"][4]
    _dump(src, [{"messages": [{"role": "user", "content": [{"type": "text", "value": "x"}]},
                              {"role": "assistant", "content": [{"type": "text", "value": "y"}],
                               "loss_weight": 0.5}]}], lines=True)
    with pytest.raises(DataError, match="only 0 .* or 1") as err:
        convert(src, root / "v1.jsonl")
    assert "messages[1].loss_weight" in str(err.value) and ":1:" in str(err.value)


def test_swift_messages_loss_and_query_response(root, check_canonical):
    src = _dump(root / "swift.jsonl", [
        {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                      {"role": "user", "content": "<image>What is in the picture?"},
                      {"role": "assistant", "content": "A red square.", "loss": False},
                      {"role": "user", "content": "And its shape?"},
                      {"role": "assistant", "content": "Square.", "loss": True}],
         "images": ["mllm_demo_data/1.jpg"]},
        {"system": "Be short.", "query": "<image>Colour?", "response": "Blue.",
         "history": [["Ready?", "Yes."]], "images": ["mllm_demo_data/2.jpg"]},
    ], lines=True)
    assert convert(src, root / "out.jsonl") == 2  # detected per file from the first record
    messages_sample, _ = check_canonical(root / "out.jsonl")
    assert messages_sample["messages"][2]["train"] is False
    qrh = _dump(root / "qrh.jsonl", [json.loads(src.read_text().splitlines()[1])], lines=True)
    convert(qrh, root / "qrh_out.jsonl")
    (sample,) = check_canonical(root / "qrh_out.jsonl")
    assert [m["role"] for m in sample["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert sample["messages"][3]["content"] == [IMG, TXT("Colour?")] and sample["answers"] == ["Blue."]
    loaded = load_samples(root / "out.jsonl")
    assert loaded[0].messages[2].get("train") is False


def test_internvl_meta_file_root_annotation_repeat(root, check_canonical):
    ann = root / "ann"
    ann.mkdir()
    recs = [{"id": i, "image": f"mllm_demo_data/{i + 1}.jpg", "width": 16, "height": 12,
             "conversations": [{"from": "human", "value": "<image>\nColour?"},
                               {"from": "gpt", "value": ["red", "blue"][i]}]} for i in range(2)]
    _dump(ann / "colours.jsonl", recs, lines=True)
    _dump(ann / "text.jsonl", [{"id": 0, "conversations": [{"from": "human", "value": "2+2?"},
                                                          {"from": "gpt", "value": "4"}]}], lines=True)
    meta = _dump(root / "meta.json", {
        "colours": {"root": "./", "annotation": "ann/colours.jsonl", "data_augment": False,
                    "repeat_time": 2, "length": 2},
        "text": {"root": "./", "annotation": "ann/text.jsonl", "repeat_time": 1, "length": 1}})
    assert convert(meta, root / "train.jsonl") == 5
    samples = check_canonical(root / "train.jsonl")
    assert [s["id"] for s in samples] == ["colours/0", "colours/1", "colours/0-rep2", "colours/1-rep2",
                                          "text/0"]
    assert samples[0]["image_sizes"] == [[16, 12]]
    _dump(meta, {"colours": {"root": "./", "annotation": "ann/colours.jsonl", "repeat_time": 0.5}})
    assert convert(f"{meta}#colours", root / "half.jsonl") == 1
    _dump(meta, {"colours": {"root": "./", "annotation": "ann/colours.jsonl", "repeat_time": 1.5}})
    with pytest.raises(DataError, match="repeat_time must be"):
        convert(meta, root / "bad.jsonl")


def test_openai_image_url_file_url_data_uri_and_http_refused(root, check_canonical):
    png = (root / "images/3.png").read_bytes()
    src = _dump(root / "openai.jsonl", [
        {"id": "file", "messages": [
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": (root / "images/3.png").as_uri()}},
                {"type": "text", "text": "Colour?"}]},
            {"role": "assistant", "content": "Green."}]},
        {"id": "path", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Colour?"},
                                         {"type": "image_url", "image_url": "mllm_demo_data/1.jpg"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Red."}]}]},
        {"id": "inline", "messages": [
            {"role": "user", "content": [
                {"type": "image_url",
                 "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}},
                {"type": "text", "text": "Colour?"}]},
            {"role": "assistant", "content": "Green."}]},
    ], lines=True)
    assert convert(src, root / "out.jsonl") == 3
    file_s, path_s, inline_s = check_canonical(root / "out.jsonl")
    assert file_s["images"] == ["images/3.png"] and path_s["images"] == ["mllm_demo_data/1.jpg"]
    assert path_s["messages"][0]["content"] == [TXT("Colour?"), IMG]
    assert (root / inline_s["images"][0]).read_bytes() == png
    _dump(src, [{"messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
        {"role": "assistant", "content": "x"}]}], lines=True)
    with pytest.raises(DataError, match="not downloaded .* pass --fetch-urls") as err:
        convert(src, root / "out2.jsonl")
    assert "messages[0].content[0]:" in str(err.value) and not (root / "out2.jsonl").exists()


def test_fetch_urls_stores_the_image(root, check_canonical, monkeypatch):
    png = (root / "images/3.png").read_bytes()
    fetched = []

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            return png

    def fake_urlopen(url, timeout):
        fetched.append(url)
        return Response()

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    src = _dump(root / "urls.jsonl", [{"images": ["http://images.invalid/a.png"], "conversations": [
        {"from": "human", "value": "<image>Colour?"}, {"from": "gpt", "value": "Green."}]}], lines=True)
    assert convert(src, root / "out.jsonl", fetch_urls=True) == 1
    (sample,) = check_canonical(root / "out.jsonl")
    assert fetched == ["http://images.invalid/a.png"] and (root / sample["images"][0]).read_bytes() == png


def test_top_level_object_is_recognised_not_invalid_json(root):
    src = _dump(root / "odd.json", {"a": {"b": 1}})
    with pytest.raises(DataError, match="neither a record .* nor a meta file"):
        convert(src, root / "out.jsonl")
    one = _dump(root / "one.json", {"conversations": [{"from": "human", "value": "hi"},
                                                      {"from": "gpt", "value": "hello"}]})
    assert convert(one, root / "one_out.jsonl") == 1


def test_hf_conversion_prints_no_progress_bars(root, capfd):
    pytest.importorskip("datasets")
    src = _dump(root / "qa.json", [{"question": "2+2?", "answer": "4"}, {"question": "3+3?", "answer": "6"}])
    assert convert(src, root / "out.jsonl", fmt="hf") == 2
    assert "Generating train split" not in capfd.readouterr().err
    import datasets

    assert not datasets.are_progress_bars_disabled()  # the caller's setting is restored


@pytest.mark.parametrize("field,value", [("chat_template_kwargs", {"enable_thinking": False}),
                                         ("objects", {"ref": ["cat"], "bbox": [[1, 2, 3, 4]]}),
                                         ("rejected_response", "no")])
def test_fields_that_cannot_be_honoured_are_refused_not_dropped(root, field, value):
    rec = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], field: value}
    src = _dump(root / "x.jsonl", [rec], lines=True)
    with pytest.raises(DataError, match="is not supported") as err:
        convert(src, root / "out.jsonl")
    assert f":1: {field}:" in str(err.value)


def test_internvl_meta_paths_relative_to_the_working_directory(root, monkeypatch, check_canonical):
    """InternVL opens meta paths as given (from where training starts); vlmtune tries next to
    the meta file first, then the working directory."""
    (root / "shell").mkdir()
    _dump(root / "ann.jsonl", [{"id": 1, "image": "mllm_demo_data/1.jpg", "conversations": [
        {"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "red"}]}], lines=True)
    meta = _dump(root / "shell" / "meta.json", {"d": {"root": "./", "annotation": "ann.jsonl", "repeat_time": 1}})
    monkeypatch.chdir(root)
    assert convert(meta, root / "out.jsonl") == 1
    assert check_canonical(root / "out.jsonl")[0]["images"] == ["mllm_demo_data/1.jpg"]
