"""Diagnostics no fine-tuning tool has: answer-format mismatch between train and eval data
(``format_check``), a memory plan per method before training (``memory_plan``), and how
much of a full fine-tune's update a LoRA of rank r could express (``rank``).

Each module is side-effect free and returns plain data; the CLI prints it.
"""
