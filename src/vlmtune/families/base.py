"""What differs between VLM families, as data: where each role lives, default LoRA targets.

A *role* is one of ``vision`` (the image encoder), ``projector`` (what maps image features
into the language model's space) and ``language`` (the decoder and its LM head). Module
prefixes are paths from the ``*ForConditionalGeneration`` model as transformers 5 builds
it; a parameter belongs to the role with the longest matching prefix, so a projector that
lives inside the vision tower (Qwen's ``visual.merger``) is still the projector.

Example:
    >>> fam = Family("Demo", ("demo",), vision=("model.visual",),
    ...              projector=("model.visual.merger",), language=("model.language_model", "lm_head"))
    >>> fam.role_of("model.visual.merger.mlp.0.weight")
    'projector'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

# Linear layers of a Llama/Qwen/Gemma-style decoder block: attention and MLP.
DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def registry_name(name: str) -> str:
    """Module name as the family registry knows it (without PEFT/DDP wrappers)."""
    for prefix in ("module.", "base_model.model."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name

@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    vision: tuple[str, ...]
    projector: tuple[str, ...]
    language: tuple[str, ...]
    lora_targets: tuple[str, ...] = DECODER_LINEARS
    # Optional quirks (None = the default chat-template path in vlmtune.data.encode).
    encode: Callable | None = field(default=None, compare=False)
    prompt: Callable | None = field(default=None, compare=False)
    notes: str = ""
    # Speed features (vlmtune.train.vision_cache, vlmtune.train.packing); off where they would not be exact.
    vision_cache: bool = True  # image features enter only through the decoder's input embeddings
    vision_cache_why: str = ""  # why not, when vision_cache is False
    packing: str | None = None  # "1d" (plain positions) | "mrope" (Qwen 3-D positions) | None: unsupported
    packing_why: str = "not verified for this family"
    video: bool = False  # the processor and model take videos ({"type": "video"} parts)
    prefix_share: bool = True  # batched eval may prefill the rows' common leading text once
    prefix_share_why: str = ""  # why not, when prefix_share is False

    def prefixes(self, role: str) -> tuple[str, ...]:
        return getattr(self, role)

    def role_of(self, param_name: str) -> str | None:
        """The role owning a parameter or module name, by longest matching prefix."""
        best, best_len = None, -1
        for role in ("vision", "projector", "language"):
            for prefix in self.prefixes(role):
                if (param_name == prefix or param_name.startswith(prefix + ".")) and len(prefix) > best_len:
                    best, best_len = role, len(prefix)
        return best
