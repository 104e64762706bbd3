"""Questions and answers about a shapes-world scene, as canonical samples.

Each builder turns the facts of one :class:`~vlmtune.data.synth_scene.Scene` into one
canonical sample (see docs/design.md): ``id``, ``images``, ``messages`` (user turn = image
placeholder + prompt, assistant turn = ``answers[0]``), ``task``, ``answers``; multiple
choice adds ``options``. Questions are only asked when the scene makes the answer
unambiguous (a unique shape, disjoint extents for left/right or above/below).

Example:
    >>> import random
    >>> from vlmtune.data.synth_scene import sample_scene
    >>> scene = sample_scene(random.Random(0), 64)
    >>> s = build_sample("grounding", scene, "images/x.png", "x-grounding", random.Random(0))
    >>> s["answers"][0].startswith("[") and s["task"]
    'grounding'
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from vlmtune.data.synth_scene import COLOURS, KINDS, Scene, Shape

SCENE_TASKS = ("caption", "vqa", "mc", "mc_text", "grounding", "where")
WORD_TASKS = ("text",)
DETAIL_TASKS = ("detail",)
TASKS = SCENE_TASKS + WORD_TASKS + DETAIL_TASKS
NUMBER_WORDS = ("zero", "one", "two", "three", "four")
CAPTION_PROMPT = "Describe the image in one sentence."
VQA_SUFFIX = "Answer the question using a single word or phrase."
MC_LETTER_SUFFIX = "Answer with the option's letter from the given choices directly."
# mc_text: same question and lettered options, but the instruction and answer are the
# option text. Training on it and testing on `mc` reproduces answer-format drift.
MC_TEXT_SUFFIX = "Answer with the option's text from the given choices directly."
GROUNDING_SUFFIX = "Answer with its bounding box [x1, y1, x2, y2] in pixels."
TEXT_PROMPT = "What word is written?"
# where: the 3x3 region of a shape's box centre, a coarse position word (never a box), so
# a model pretrained on it knows where things are and grounding stays a new skill.
ROWS = ("top", "", "bottom")
COLS = ("left", "", "right")


@dataclass(frozen=True)
class Question:
    """A short-answer question; ``pool`` holds plausible wrong answers for options."""

    text: str
    answers: tuple[str, ...]
    pool: tuple[str, ...]


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _plural(kind: str) -> str:
    return kind + "s"


def _relation(a: Shape, b: Shape) -> tuple[str, str] | None:
    """("x", "left"|"right") or ("y", "above"|"below") of ``a`` versus ``b`` if unambiguous."""
    if a.box[2] <= b.box[0] or b.box[2] <= a.box[0]:
        return ("x", "left" if a.box[2] <= b.box[0] else "right")
    if a.box[3] <= b.box[1] or b.box[3] <= a.box[1]:
        return ("y", "above" if a.box[3] <= b.box[1] else "below")
    return None


def _phrases(scene: Scene) -> list[str]:
    """Noun phrases per colour+kind group, left to right: ``["a red circle", "two blue squares"]``."""
    groups: dict[tuple[str, str], list[Shape]] = {}
    for shape in sorted(scene.shapes, key=lambda s: (s.box[0], s.box[1])):
        groups.setdefault((shape.colour, shape.kind), []).append(shape)
    out = []
    for (colour, kind), members in groups.items():
        n = len(members)
        out.append(_a(f"{colour} {kind}") if n == 1 else f"{NUMBER_WORDS[n]} {colour} {_plural(kind)}")
    return out


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def captions(scene: Scene) -> list[str]:
    """Reference captions, most canonical first (the assistant turn uses the first)."""
    listing, n = _join(_phrases(scene)), len(scene.shapes)
    noun = "shape" if n == 1 else "shapes"
    out = [
        f"{listing[0].upper()}{listing[1:]} on a {scene.background} background.",
        f"There {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} {noun}: {listing}.",
        f"A {scene.background} background with {listing}.",
    ]
    unique = sorted(scene.unique(), key=lambda s: s.box[0])
    pairs = [(a, b, _relation(a, b)) for a in unique for b in unique if a is not b]
    pairs = [(a, b, r) for a, b, r in pairs if r is not None]
    if pairs:
        a, b, (axis, where) = pairs[0]
        rel = f"to the {where} of" if axis == "x" else where
        out.append(f"The {a.name} is {rel} the {b.name}.")
    else:
        out.append(f"An image of {listing}.")
    return out


def _count_question(scene: Scene, rng: random.Random) -> Question:
    pick = rng.choice(["all", "kind", "colour"])
    if pick == "all":
        text, n = "How many shapes are there?", len(scene.shapes)
    elif pick == "kind":
        kind = rng.choice(KINDS)
        text, n = f"How many {_plural(kind)} are there?", scene.count(kind=kind)
    else:
        colour = rng.choice([s.colour for s in scene.shapes])
        text, n = f"How many {colour} shapes are there?", scene.count(colour=colour)
    return Question(text, (str(n), NUMBER_WORDS[n]), tuple(str(i) for i in range(5)))


def questions(scene: Scene, rng: random.Random) -> dict[str, list[Question]]:
    """Unambiguous short-answer questions by type: colour, shape, count, position."""
    out: dict[str, list[Question]] = {"colour": [], "shape": [], "count": [], "position": []}
    out["count"].append(_count_question(scene, rng))
    for kind in KINDS:
        if scene.count(kind=kind) == 1:
            colour = next(s.colour for s in scene.shapes if s.kind == kind)
            out["colour"].append(Question(f"What color is the {kind}?", (colour,),
                                          tuple(sorted(COLOURS))))
    for colour in sorted({s.colour for s in scene.shapes}):
        if scene.count(colour=colour) == 1:
            kind = next(s.kind for s in scene.shapes if s.colour == colour)
            out["shape"].append(Question(f"What shape is the {colour} object?", (kind,), KINDS))
    unique = scene.unique()
    for a in unique:
        for b in unique:
            rel = _relation(a, b) if a is not b else None
            if rel is None:
                continue
            axis, where = rel
            choice = "to the left or to the right of" if axis == "x" else "above or below"
            pool = ("left", "right") if axis == "x" else ("above", "below")
            out["position"].append(Question(f"Is the {a.name} {choice} the {b.name}?",
                                            (where,), pool))
    return out


def choose_question(scene: Scene, rng: random.Random) -> Question:
    """A question whose type is uniform over the types this scene supports."""
    by_type = questions(scene, rng)
    kind = rng.choice([k for k, qs in by_type.items() if qs])
    return rng.choice(by_type[kind])


def _options(q: Question, rng: random.Random) -> tuple[list[str], int]:
    wrong = [p for p in q.pool if p not in q.answers]
    options = [q.answers[0]] + rng.sample(wrong, min(3, len(wrong)))
    rng.shuffle(options)
    return options, options.index(q.answers[0])


def _mc(scene: Scene, rng: random.Random, *, letters: bool) -> tuple[str, list[str], dict]:
    q = choose_question(scene, rng)
    options, right = _options(q, rng)
    lines = [f"{chr(65 + i)}. {opt}" for i, opt in enumerate(options)]
    suffix = MC_LETTER_SUFFIX if letters else MC_TEXT_SUFFIX
    prompt = "\n".join([q.text, *lines, suffix])
    answer = chr(65 + right) if letters else options[right]
    return prompt, [answer], {"options": options}


def _grounding(scene: Scene, rng: random.Random) -> tuple[str, list[str], dict]:
    shape = rng.choice(scene.unique())
    box = "[{}, {}, {}, {}]".format(*shape.box)
    return f"Where is the {shape.name}? {GROUNDING_SUFFIX}", [box], {}


def region_word(box: tuple[int, int, int, int], size: int) -> str:
    """The 3x3 region of ``box``'s centre in a ``size``-px image: "top left", "top", ...,
    "center", ..., "bottom right".

    Example:
        >>> region_word((0, 0, 10, 10), 64), region_word((25, 40, 35, 60), 64)
        ('top left', 'bottom')
    """
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    col, row = min(2, int(cx * 3 / size)), min(2, int(cy * 3 / size))
    return " ".join(w for w in (ROWS[row], COLS[col]) if w) or "center"


def _where(scene: Scene, rng: random.Random) -> tuple[str, list[str], dict]:
    shape = rng.choice(scene.unique())
    return f"Where is the {shape.name}?\n{VQA_SUFFIX}", [region_word(shape.box, scene.size)], {}


def _scene_prompt(task: str, scene: Scene, rng: random.Random) -> tuple[str, list[str], dict]:
    """(prompt, answers, extra fields) for one scene task."""
    if task == "caption":
        return CAPTION_PROMPT, captions(scene), {}
    if task == "vqa":
        q = choose_question(scene, rng)
        return f"{q.text}\n{VQA_SUFFIX}", list(q.answers), {}
    if task in ("mc", "mc_text"):
        return _mc(scene, rng, letters=task == "mc")
    if task == "grounding":
        return _grounding(scene, rng)
    if task == "where":
        return _where(scene, rng)
    raise ValueError(f"unknown scene task {task!r}; expected one of {SCENE_TASKS}")


def _canonical(sample_id: str, image: str, task: str, prompt: str, answers: list[str],
               extra: dict) -> dict:
    return {
        "id": sample_id,
        "images": [image],
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]},
            {"role": "assistant", "content": [{"type": "text", "text": answers[0]}]},
        ],
        "task": task,
        "answers": answers,
        **extra,
    }


def build_sample(task: str, scene: Scene, image: str, sample_id: str,
                 rng: random.Random) -> dict:
    """Canonical sample of a scene ``task`` about ``scene`` drawn at path ``image``.

    Example:
        >>> import random
        >>> from vlmtune.data.synth_scene import sample_scene
        >>> scene = sample_scene(random.Random(0), 64)
        >>> build_sample("mc", scene, "a.png", "a-mc", random.Random(0))["answers"][0] in "ABCD"
        True
    """
    prompt, answers, extra = _scene_prompt(task, scene, rng)
    return _canonical(sample_id, image, task, prompt, answers, extra)


def build_detail_sample(scene: Scene, image: str, sample_id: str) -> dict:
    """Canonical ``detail`` sample: the kind of the one small shape of ``scene`` (see
    :func:`~vlmtune.data.synth_scene.sample_detail`), asked as the ``vqa`` shape question is.

    Example:
        >>> import random
        >>> from vlmtune.data.synth_scene import sample_detail
        >>> scene = sample_detail(random.Random(0), 64)
        >>> s = build_detail_sample(scene, "d.png", "d-detail")
        >>> s["answers"] == [scene.shapes[0].kind], s["task"]
        (True, 'detail')
    """
    shape = scene.shapes[0]
    prompt = f"What shape is the {shape.colour} object?\n{VQA_SUFFIX}"
    return _canonical(sample_id, image, "detail", prompt, [shape.kind], {})


def build_text_sample(word: str, image: str, sample_id: str) -> dict:
    """Canonical ``text`` sample: read the rendered ``word`` (scored by ANLS).

    Example:
        >>> build_text_sample("cat", "w.png", "w-text")["answers"]
        ['cat']
    """
    return _canonical(sample_id, image, "text", TEXT_PROMPT, [word], {})
