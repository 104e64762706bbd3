"""The zoo card's per-question-type scores group items by the synth world's wording."""

from __future__ import annotations

import random

from vlmtune.data.synth_scene import sample_scene
from vlmtune.data.synth_tasks import build_sample
from vlmtune.zoo.quality import by_type, question_type


def test_every_synth_question_has_a_type():
    seen = set()
    for i in range(300):
        scene = sample_scene(random.Random(i), 64)
        for task in ("vqa", "mc", "where"):
            kind = question_type(build_sample(task, scene, "x.png", f"{i}-{task}", random.Random(i)))
            assert kind != "other"
            seen.add(kind)
    assert seen == {"colour", "shape", "count", "left/right", "above/below", "where"}


def test_by_type_means_per_type():
    def sample(q):
        return {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]}

    samples = [sample("What color is the circle?\nAnswer..."), sample("What color is the square?\nAnswer..."),
               sample("Is the red circle to the left or to the right of the blue square?\nA. left")]
    per_item = [{"exact_match": 1.0}, {"exact_match": 0.0}, {"exact_match": 1.0}]
    assert by_type(samples, per_item, "exact_match") == {"colour": {"n": 2, "exact_match": 0.5},
                                                         "left/right": {"n": 1, "exact_match": 1.0}}
