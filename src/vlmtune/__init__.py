"""vlmtune: adapt vision-language models to your task, and measure what each method buys."""

__version__ = "0.1.0"
