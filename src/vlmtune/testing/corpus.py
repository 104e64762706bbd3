"""Built-in English corpus for training the tiny models' tokenizers.

Why: a byte-level BPE trained on nothing has no merges, so every word becomes 3–8 byte
tokens and tiny-model sequences balloon. A few hundred deterministic sentences in the
vocabulary of the test tasks (coloured shapes, counting, multiple choice A–D, boxes such as
``[12, 40, 56, 84]``, chat-role words) give sensible merges while staying offline and
reproducible: the corpus is the same list on every machine.

Example:
    >>> lines = default_corpus()
    >>> len(lines) > 300 and any("[" in line for line in lines)
    True
"""

from __future__ import annotations

COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "black", "white", "grey", "pink")
SHAPES = ("circle", "square", "triangle", "rectangle", "star", "cross", "ellipse", "diamond")
POSITIONS = ("top left", "top right", "bottom left", "bottom right", "centre", "middle")
SIZES = ("small", "large", "tiny", "big", "medium", "thin", "wide", "tall")
RELATIONS = ("next to", "above", "below", "inside", "to the left of", "to the right of", "overlapping",
             "behind", "in front of", "between two")
# Words from the tasks the toolkit targets (documents, diagrams, geometry, captions).
TASK_WORDS = (
    "document invoice receipt total amount date number table column row header footer page title",
    "chart diagram graph axis legend arrow label line curve bar pie scale value percent average",
    "geometry angle degrees length width height radius diameter point segment vertex edge face",
    "parallel perpendicular polygon hexagon pentagon octagon cylinder sphere cube cone prism",
    "background foreground outline filled striped dotted shadow border texture pattern gradient",
    "picture photo scene object person animal building street window door table chair",
    "yes no true false correct incorrect unknown none both either neither maybe",
    "first second third fourth fifth last next previous left right top bottom upper lower",
    "count measure compare describe locate identify detect classify segment caption answer question",
)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

# Words that appear in the families' chat formats; seeing them lets BPE merge them.
CHAT_WORDS = (
    "system user assistant model User Assistant USER ASSISTANT",
    "You are a helpful assistant.",
    "[INST] What is shown in this image? [/INST]",
    "Picture 1: Picture 2: Image 1: Image 2: Here is the image.",
    "Describe the image. Answer with a single word. Answer with the letter.",
    "Question:\nWhat is in the image?\n\nAnswer:\nA red circle.\n\n",
)


def _shape_sentences() -> list[str]:
    """Statements and questions about coloured shapes (the synthetic shapes world)."""
    lines = []
    for i, colour in enumerate(COLOURS):
        for j, shape in enumerate(SHAPES):
            where = POSITIONS[(i + j) % len(POSITIONS)]
            lines.append(f"There is a {colour} {shape} in the {where} of the image.")
            if (i + j) % 2 == 0:
                lines.append(f"What colour is the {shape}? The {shape} is {colour}.")
            else:
                lines.append(f"Where is the {colour} {shape}? It is in the {where}.")
    return lines


def _caption_sentences() -> list[str]:
    """Captions relating two shapes, and the task vocabulary in short sentences."""
    lines = []
    for k in range(80):
        a, b = COLOURS[k % len(COLOURS)], COLOURS[(k * 3 + 1) % len(COLOURS)]
        s1, s2 = SHAPES[(k * 5) % len(SHAPES)], SHAPES[(k + 3) % len(SHAPES)]
        size1, size2 = SIZES[k % len(SIZES)], SIZES[(k * 7 + 2) % len(SIZES)]
        lines.append(f"A {size1} {a} {s1} {RELATIONS[k % len(RELATIONS)]} a {size2} {b} {s2}.")
    for words in TASK_WORDS:
        lines.append(words)
        lines.append(" ".join(w.capitalize() for w in words.split()) + ".")
    return lines


def _number_sentences() -> list[str]:
    """Counting answers, digits and box coordinates in the canonical ``[x1, y1, x2, y2]`` form."""
    lines = []
    for n, word in enumerate(NUMBER_WORDS):
        shape = SHAPES[n % len(SHAPES)]
        lines.append(f"How many {shape}s are there? There are {n} ({word}) {shape}s.")
    for k in range(60):
        x1, y1 = (k * 7) % 90, (k * 13) % 90
        x2, y2 = x1 + 10 + k % 30, y1 + 12 + (k * 3) % 30
        colour, shape = COLOURS[k % len(COLOURS)], SHAPES[k % len(SHAPES)]
        lines.append(f"Where is the {colour} {shape}? [{x1}, {y1}, {x2}, {y2}]")
    lines.append(" ".join(str(i) for i in range(200)))
    return lines


def _choice_sentences() -> list[str]:
    """Multiple-choice questions with letters A–D, and single-letter answers."""
    lines = []
    for k in range(40):
        options = [COLOURS[(k + m) % len(COLOURS)] for m in range(4)]
        shape = SHAPES[k % len(SHAPES)]
        lines.append(
            f"Which colour is the {shape}? A. {options[0]} B. {options[1]} C. {options[2]} D. {options[3]}"
        )
        lines.append(f"Answer: {'ABCD'[k % 4]}")
    lines.append("A B C D a b c d")
    return lines


def default_corpus() -> list[str]:
    """The built-in corpus (deterministic list of short English lines)."""
    return [*CHAT_WORDS, *_shape_sentences(), *_caption_sentences(), *_number_sentences(), *_choice_sentences()]
