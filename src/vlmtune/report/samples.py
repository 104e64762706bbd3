"""Side-by-side predictions: for a few test items, the image, the reference and every
variant's answer with its score.

Why: numbers hide failure modes (a fine-tune that answers in the wrong format, a baseline
that rambles); reading a handful of outputs shows them. The items shown are the ones where
the variants' scores differ most (ties broken by id), since identical answers teach
nothing; the choice is deterministic, so a rebuilt report shows the same items.

Example:
    >>> items = pick_items(view, per_task=4)  # doctest: +SKIP
    >>> items[0].answers[0].variant, items[0].thumbnail[:22]  # doctest: +SKIP
    ('baseline', 'data:image/png;base64,')
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

from vlmtune.report.summary import GridView
# Function-level imports: PIL loads only when sample images are embedded.

THUMB = 160  # px, longest side


@dataclass
class Answer:
    variant: str
    label: str
    text: str
    score: float | None
    format_ok: bool | None


@dataclass
class Item:
    id: str
    task: str
    prompt: str
    references: list[str]
    image: Path | None
    thumbnail_png: bytes | None
    answers: list[Answer] = field(default_factory=list)

    @property
    def thumbnail(self) -> str | None:
        """The thumbnail as a ``data:`` URI for the self-contained HTML."""
        if self.thumbnail_png is None:
            return None
        return "data:image/png;base64," + base64.b64encode(self.thumbnail_png).decode("ascii")

    @property
    def prompt_tail(self) -> str:
        """The end of the prompt (the question), as chat templates put boilerplate first."""
        text = self.prompt.strip()
        return text if len(text) <= 300 else "…" + text[-300:]

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{self.task}-{self.id}")


def thumbnail(path: Path | None) -> bytes | None:
    """A PNG at most ``THUMB`` px on its longest side, or ``None`` if the image cannot be read."""
    if path is None:
        return None
    try:
        from PIL import Image

        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            return buf.getvalue()
    except (OSError, ValueError):
        return None


def pick_items(view: GridView, per_task: int = 6) -> list[Item]:
    """Up to ``per_task`` test items per task, most disagreement first."""
    items = []
    for task in view.tasks:
        metric = view.metric[task]
        rows = {r.name: {str(x.get("id")): x for x in r.rows(task)} for r in view.runs}
        ids = sorted(set().union(*[set(v) for v in rows.values()])) if rows else []

        def spread(item_id: str) -> float:
            values = [((rows[n].get(item_id) or {}).get("scores") or {}).get(metric) for n in rows]
            values = [v for v in values if isinstance(v, (int, float))]
            return max(values) - min(values) if values else 0.0

        for item_id in sorted(ids, key=lambda i: (-spread(i), i))[:per_task]:
            items.append(_item(view, task, item_id, rows, metric))
    return items


def _item(view: GridView, task: str, item_id: str, rows: dict[str, dict[str, dict]], metric: str | None) -> Item:
    first = next(rows[r.name][item_id] for r in view.runs if item_id in rows[r.name])
    images = first.get("images") or []
    image = Path(images[0]) if images else None
    item = Item(id=item_id, task=task, prompt=str(first.get("prompt") or ""),
                references=[str(x) for x in first.get("references") or []], image=image,
                thumbnail_png=thumbnail(image))
    for run in view.runs:
        row = rows[run.name].get(item_id)
        if row is None:
            continue
        score = (row.get("scores") or {}).get(metric) if metric else None
        item.answers.append(Answer(run.name, run.label, str(row.get("prediction", "")),
                                   float(score) if isinstance(score, (int, float)) else None,
                                   row.get("format_ok")))
    return item
