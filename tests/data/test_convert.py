"""Converters: LLaVA/ShareGPT/InternVL/HF datasets -> canonical JSONL, or one clear error."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from vlmtune.data.convert import convert, detect_format
from vlmtune.errors import ConfigError, DataError

IMG, TXT = {"type": "image"}, lambda t: {"type": "text", "text": t}


@pytest.fixture
def root(tmp_path) -> Path:
    for name, colour in (("a.png", "red"), ("b.png", "blue"), ("sub/c.jpg", "green")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (8, 8), colour).save(tmp_path / name)
    return tmp_path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _turns(*values: str, key=("from", "value"), roles=("human", "gpt")) -> list[dict]:
    return [{key[0]: roles[i % 2], key[1]: v} for i, v in enumerate(values)]


def test_llava_json_array_markers_in_place(root, check_canonical):
    records = [
        {"id": "one", "image": "a.png", "conversations": _turns("<image>\nWhat colour?", "Red.")},
        {"id": "prepend", "image": "sub/c.jpg", "conversations": _turns("Describe.", "Green.")},
        {"id": "two", "images": ["a.png", "b.png"], "system": "Be brief.",
         "conversations": _turns("Compare <image> with\n<image>\nnow.", "Different.", "Sure?", "Yes.")},
        {"id": "text", "conversations": _turns("2+2?", "4", roles=("user", "assistant"))},
    ]
    src = root / "llava.json"
    src.write_text(json.dumps(records, indent=1))
    assert detect_format(src) == "llava"
    assert convert(src, root / "train.jsonl") == 4
    one, prepend, two, text = check_canonical(root / "train.jsonl")
    assert one["images"] == ["a.png"] and one["answers"] == ["Red."]
    assert one["messages"][0] == {"role": "user", "content": [IMG, TXT("What colour?")]}
    assert prepend["images"] == ["sub/c.jpg"]  # no marker + one image: image goes first
    assert prepend["messages"][0]["content"] == [IMG, TXT("Describe.")]
    assert two["messages"][0] == {"role": "system", "content": [TXT("Be brief.")]}
    assert two["messages"][1]["content"] == [TXT("Compare "), IMG, TXT(" with"), IMG, TXT("now.")]
    assert [m["role"] for m in two["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert two["answers"] == ["Yes."] and text["images"] == [] and "task" not in text


def test_sharegpt_role_content_and_task_option(root, check_canonical):
    src = _write_jsonl(root / "sg.jsonl", [
        {"images": ["b.png"], "messages": _turns("<image>What?", "Blue", key=("role", "content"),
                                                   roles=("user", "assistant"))}])
    assert convert(src, root / "out" / "x.jsonl", fmt="sharegpt", image_root=root,
                   images_outside="copy", task="vqa") == 1
    (sample,) = check_canonical(root / "out" / "x.jsonl")
    assert sample["id"] == "sg-1" and sample["task"] == "vqa"
    assert sample["images"] == ["x_images/b.png"]  # outside the output root: copied in
    assert (root / "out" / "x_images" / "b.png").read_bytes() == (root / "b.png").read_bytes()


def test_internvl_jsonl_with_pure_text_lines(root, check_canonical):
    src = _write_jsonl(root / "ivl.jsonl", [
        {"id": 0, "image": "a.png", "width": 8, "height": 8,
         "conversations": _turns("<image>\nRead it.", "Nothing.")},
        {"id": 1, "conversations": _turns("Hello", "Hi!")},
        {"id": 2, "image": ["a.png", "b.png"],
         "conversations": _turns("Image-1: <image>\nImage-2: <image>\nSame?", "No.")},
    ])
    assert convert(src, root / "ivl_out.jsonl", fmt="internvl") == 3
    first, text, multi = check_canonical(root / "ivl_out.jsonl")
    assert first["id"] == "0" and text["images"] == [] and multi["images"] == ["a.png", "b.png"]
    assert multi["messages"][0]["content"] == [TXT("Image-1: "), IMG, TXT("Image-2: "), IMG, TXT("Same?")]


def _png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 6), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_hf_parquet_with_embedded_images(root, check_canonical):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({
        "image": datasets.Image(), "question": datasets.Value("string"),
        "answers": datasets.List(datasets.Value("string")), "task": datasets.Value("string")})
    red, blue = _png("red"), _png("blue")
    ds = datasets.Dataset.from_dict({
        "image": [{"bytes": red, "path": None}, {"bytes": blue, "path": None},
                  {"bytes": red, "path": None}],
        "question": ["Colour?", "Colour of <image> here?", "Again?"],
        "answers": [["red", "Red"], ["blue"], ["red"]], "task": ["vqa"] * 3}, features=features)
    src = root / "shards" / "train-00000-of-00001.parquet"
    src.parent.mkdir()
    ds.to_parquet(str(src))
    assert detect_format(src.parent) == "hf"
    assert convert(src.parent, root / "hf.jsonl") == 3
    samples = check_canonical(root / "hf.jsonl")
    assert [s["id"] for s in samples] == ["shards-1", "shards-2", "shards-3"]  # no id column
    assert samples[0]["answers"] == ["red", "Red"] and samples[0]["task"] == "vqa"
    assert samples[0]["messages"][0]["content"] == [IMG, TXT("Colour?")]
    assert samples[1]["messages"][0]["content"] == [TXT("Colour of "), IMG, TXT(" here?")]
    assert samples[0]["images"] == samples[2]["images"] != samples[1]["images"]  # stored once
    assert samples[0]["images"][0].startswith("hf_images/")
    assert (root / samples[0]["images"][0]).read_bytes() == red  # bytes kept, not re-encoded
    assert len(list((root / "hf_images").iterdir())) == 2


def test_hf_json_messages_column_and_paths(root, check_canonical):
    pytest.importorskip("datasets")
    rows = [{"uid": "m1", "images": ["a.png", "b.png"],
             "messages": [{"role": "user", "content": [{"type": "text", "text": "Same colour?"}]},
                          {"role": "assistant", "content": [{"type": "text", "text": "No."}]}]}]
    src = _write_jsonl(root / "rows.jsonl", rows)
    assert convert(src, root / "m.jsonl", fmt="hf", id_column="uid") == 1
    (sample,) = check_canonical(root / "m.jsonl")
    assert sample["id"] == "m1" and sample["images"] == ["a.png", "b.png"]
    assert sample["messages"][0]["content"] == [IMG, IMG, TXT("Same colour?")]


def _fails(src: Path, out: Path, pattern: str, **kw) -> DataError:
    before = sorted(p.name for p in out.parent.iterdir())
    with pytest.raises(DataError) as info:
        convert(src, out, **kw)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert sorted(p.name for p in out.parent.iterdir()) == before  # nothing half-written
    return info.value


GOOD = {"image": "a.png", "conversations": _turns("<image>\nQ", "A")}


@pytest.mark.parametrize("record, line, field, message", [
    ('{"image": "a.png", "conversations": [', 2, None, "invalid JSON"),
    ({"image": "a.png"}, 2, "conversations", "missing or empty"),
    ({"image": "a.png", "conversations": _turns("<image> and <image>", "A")}, 2,
     "conversations", r"2 <image> marker\(s\) but 1 image"),
    ({"images": ["a.png", "b.png"], "conversations": _turns("Q", "A")}, 2, "conversations",
     "mark each one's place"),
    ({"image": "nope.png", "conversations": _turns("Q", "A")}, 2, "image", "image not found"),
    ({"image": "a.png", "conversations": _turns("Q", "<image>")}, 2,
     r"conversations\[1\]\.value", "only allowed in user turns"),
    ({"conversations": [{"from": "robot", "value": "Q"}]}, 2, r"conversations\[0\]\.from",
     "unknown speaker"),
    ({"image": "a.png", "conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt"}]}, 2,
     r"conversations\[1\]\.value", "must be a string"),  # named as in the source file, not .content
    ({"conversations": _turns("Q")}, 2, "conversations", "last turn must be from the assistant"),
    ({"id": "x", "conversations": _turns("Q", "A")}, 3, "id", "duplicate id"),
])
def test_bad_records_name_file_line_and_field(root, record, line, field, message):
    records = [dict(GOOD, id="x"), record] if field == "id" else [GOOD, record]
    if field == "id":
        records.insert(1, dict(GOOD, id="y"))
    src = _write_jsonl(root / "bad.jsonl", records)
    (root / "out.jsonl").write_text("previous\n")
    where = rf"^{re.escape(str(src))}:{line}: " + (rf"{field}: " if field else "")
    err = _fails(src, root / "out.jsonl", where + ".*" + message, fmt="llava")
    assert err.line == line and (root / "out.jsonl").read_text() == "previous\n"


def test_json_array_errors_point_at_the_element_line(root):
    src = root / "arr.json"
    src.write_text('[\n  {"image": "a.png", "conversations": [{"from": "human", "value": "<image>Q"},'
                   ' {"from": "gpt", "value": "A"}]},\n\n  {"image": "b.png"}\n]\n')
    _fails(src, root / "o.jsonl", rf"{re.escape(str(src))}:4: conversations: ", fmt="llava")


def test_image_outside_output_root(root, check_canonical):
    src = _write_jsonl(root / "in.jsonl", [GOOD])
    (root / "deep").mkdir()
    _fails(src, root / "deep" / "o.jsonl", "outside the dataset root")
    _fails(src, root / "deep" / "o.jsonl", "data.allow_outside_root: true; pass --allow-outside-root",
           images_outside="keep")  # at convert time, not seconds into training
    assert convert(src, root / "deep" / "o.jsonl", images_outside="keep", allow_outside_root=True) == 1
    assert _read(root / "deep" / "o.jsonl")[0]["images"] == ["../a.png"]


def test_dedupe_ids_and_unknown_option(root, check_canonical):
    src = _write_jsonl(root / "d.jsonl", [dict(GOOD, id="s"), dict(GOOD, id="s")])
    assert convert(src, root / "o.jsonl", dedupe_ids=True) == 2
    assert [s["id"] for s in check_canonical(root / "o.jsonl")] == ["s", "s-2"]
    with pytest.raises(ConfigError, match="image_column"):
        convert(src, root / "o.jsonl", image_column="img")
    with pytest.raises(ConfigError, match="fmt"):
        convert(src, root / "o.jsonl", fmt="coco")


def test_hf_bad_inputs(root):
    datasets = pytest.importorskip("datasets")
    src = root / "bad.parquet"
    datasets.Dataset.from_dict({"image": [b"not an image"], "question": ["Q"], "answer": ["A"]}
                               ).to_parquet(str(src))
    _fails(src, root / "o.jsonl", rf"{re.escape(str(src))}:1: image\[0\]: embedded image is not readable")
    with pytest.raises(ConfigError, match="question_column"):
        convert(src, root / "o.jsonl", question_column="prompt")
    other = root / "other.parquet"
    datasets.Dataset.from_dict({"text": ["t"]}).to_parquet(str(other))
    _fails(other, root / "o.jsonl", "no conversation column")


def test_failed_conversion_leaves_no_new_folder(root):
    src = _write_jsonl(root / "bad.jsonl", [GOOD, {"conversations": _turns("Q")}])
    out = root / "new" / "deeper" / "out.jsonl"
    with pytest.raises(DataError):
        convert(src, out, fmt="llava")
    assert not (root / "new").exists()  # the folders the conversion created are gone again
    (root / "kept").mkdir()
    (root / "kept" / "mine.txt").write_text("user file")
    with pytest.raises(DataError):
        convert(src, root / "kept" / "sub" / "out.jsonl", fmt="llava")
    assert sorted(p.name for p in (root / "kept").iterdir()) == ["mine.txt"]
