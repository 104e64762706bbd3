"""Generated tiny builds: the config shrinker keeps an architecture's structure, the processor's
special tokens come from its own module, and config token ids point at the processor's tokens."""

from __future__ import annotations

from vlmtune.testing.shrink import shrink_dict


def test_shrink_keeps_structure_and_cuts_per_layer_lists():
    from transformers import AutoConfig

    d = shrink_dict(AutoConfig.for_model("qwen3_vl_moe").to_dict(), width=32, layers=2, vocab=500)
    text, vision = d["text_config"], d["vision_config"]
    assert (text["hidden_size"], text["num_hidden_layers"], text["vocab_size"]) == (32, 2, 500)
    assert text["num_local_experts"] == 4 and text["num_experts_per_tok"] == 2  # still a mixture of experts
    assert (vision["depth"], vision["hidden_size"]) == (2, 32)
    assert vision["deepstack_visual_indexes"] == [0, 1]  # indices spread over the new depth
    assert text["rope_parameters"]["rope_theta"] == 500000.0  # RoPE kept as published


def test_shrink_keeps_both_attention_kinds():
    d = shrink_dict({"num_hidden_layers": 6, "layer_types": ["sliding"] * 5 + ["full"]}, layers=2)
    assert d["layer_types"] == ["sliding", "full"]


def test_mrope_sections_scaled_to_the_tiny_head():
    d = shrink_dict({"hidden_size": 4096, "num_attention_heads": 32,
                     "rope_parameters": {"mrope_section": [16, 24, 24]}})
    assert sum(d["rope_parameters"]["mrope_section"]) == 8  # half of the 16-wide head, all rotary


def test_token_plan_reads_the_processors_own_tokens():
    from transformers import PixtralProcessor

    from vlmtune.testing.generic import source_tokens

    literals, _ = source_tokens(PixtralProcessor)
    assert {"[IMG]", "[IMG_BREAK]", "[IMG_END]"} <= set(literals)


def test_generated_build_reloads_and_wires_image_token(tmp_path):
    from transformers import AutoConfig, AutoProcessor

    from vlmtune.testing import build_tiny

    path = build_tiny("mistral3", tmp_path / "m3")
    processor, config = AutoProcessor.from_pretrained(path), AutoConfig.from_pretrained(path)
    assert config.image_token_index == processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    assert config.get_text_config().num_hidden_layers == 2
    assert len(processor.tokenizer) <= config.get_text_config().vocab_size
