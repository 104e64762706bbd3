"""Mllama (Llama 3.2 Vision): tiled ``vision_model`` whose features enter the decoder
through cross-attention layers; ``multi_modal_projector`` is one linear layer. The
cross-attention layers have their own q/k/v/o projections, so the default LoRA targets
reach them too."""

from vlmtune.families.base import Family

MLLAMA = Family("Mllama", ("mllama",), vision=("model.vision_model",),
                projector=("model.multi_modal_projector",),
                language=("model.language_model", "lm_head"),
                vision_cache=False, vision_cache_why="image features enter through cross-attention layers",
                packing_why="its cross-attention mask is per row",
                prefix_share=False,
                prefix_share_why="measured not exact (logits differ): images enter through cross-attention "
                                 "states set up by the first forward")
FAMILIES = (MLLAMA,)
