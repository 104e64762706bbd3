"""InternVL (the native transformers port, not the remote-code checkpoints): InternViT
``vision_tower``, pixel-shuffle MLP ``multi_modal_projector``, Qwen2/Llama decoder."""

from vlmtune.families.base import Family

INTERNVL = Family("InternVL", ("internvl",), vision=("model.vision_tower",),
                  projector=("model.multi_modal_projector",),
                  language=("model.language_model", "lm_head"), packing="1d", video=True)
FAMILIES = (INTERNVL,)
