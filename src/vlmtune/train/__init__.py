"""Training: the one loop for full, LoRA and QLoRA (``loop``) and what only it uses.

The step plan (``steps``), speed options that must not change the loss (``packing``,
``vision_cache``, ``fused_lora``, ``compile``), processes (``distributed``), atomic
checkpoints (``checkpoint``), logs and measurements taken while training (``logs``,
``measure``, ``flops``, ``vision_share``).

Example:
    >>> from vlmtune.train import train
    >>> run_dir = train(cfg)  # doctest: +SKIP
"""

from vlmtune.train.loop import load_split, n_target_tokens, token_loss_sum, train

__all__ = ["load_split", "n_target_tokens", "token_loss_sum", "train"]
