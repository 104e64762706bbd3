"""Gemma 3 (multimodal): SigLIP ``vision_tower``, pooling ``multi_modal_projector``.
The processor's ``token_type_ids`` mark image tokens, which attend bidirectionally; the
model needs them when training, so the collator passes them through."""

from vlmtune.families.base import Family

GEMMA3 = Family("Gemma3", ("gemma3",), vision=("model.vision_tower",),
                projector=("model.multi_modal_projector",),
                language=("model.language_model", "lm_head"),
                packing_why="image tokens attend bidirectionally through token_type_ids blocks",
                prefix_share=False,
                prefix_share_why="measured not exact (logits differ): its bidirectional image blocks come from "
                                 "token_type_ids")
FAMILIES = (GEMMA3,)
