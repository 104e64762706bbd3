"""Survey: which image-text-to-text architectures build a tiny checkpoint and train one step.

Usage: python scripts/survey_vlms.py [MODEL_TYPE ...]   (all of transformers' mapping by default)
"""
import sys
import tempfile
import time
import traceback

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES as M

from vlmtune.model.load import cast_floats
from vlmtune.testing.generic import build_generic

MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "a red circle"}]}]


def smoke(mt: str, root: str) -> str:
    path = build_generic(mt, f"{root}/{mt}")
    proc = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    text = proc.apply_chat_template(MESSAGES, tokenize=False)
    image = Image.fromarray((np.random.RandomState(0).rand(48, 64, 3) * 255).astype("uint8"))
    batch = proc(text=[text], images=[[image]], return_tensors="pt")
    batch.pop("labels", None)
    batch = cast_floats(dict(batch), model.dtype)
    out = model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    assert torch.isfinite(out.loss)
    n = sum(p.numel() for p in model.parameters())
    return f"{n / 1e6:.2f}M seq={batch['input_ids'].shape[1]}"


only = sys.argv[1:]
with tempfile.TemporaryDirectory() as root:
    for mt in M:
        if only and mt not in only:
            continue
        t = time.time()
        try:
            info = smoke(mt, root)
            print(f"OK   {mt:24s} {info} {time.time() - t:.1f}s", flush=True)
        except Exception as e:
            print(f"FAIL {mt:24s} {type(e).__name__}: {str(e).splitlines()[0][:220] if str(e) else ''}", flush=True)
            if only:
                traceback.print_exc()
