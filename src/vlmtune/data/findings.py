"""A finding of the data checks (``vlmtune data check``): what is wrong or worth knowing
about a dataset before training, with examples. ``format_check`` (train vs eval formats)
and ``format_template`` (rendered prompts, train vs serve) both produce them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Finding:
    severity: str  # error | warning | info
    task: str
    aspect: str  # instruction | answer_type | answer_length | images | resolution | template | tasks | prompt | labels
    message: str
    examples: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
