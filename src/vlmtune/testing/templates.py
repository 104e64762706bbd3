"""Chat templates (Jinja) for the tiny models, one per family, in each family's real format.

Why: label masking, prompt building and the format-mismatch check must be exercised
against the same rendered strings the released checkpoints produce (Qwen's
``<|im_start|>``/``<|vision_start|><|image_pad|><|vision_end|>``, Gemma's
``<start_of_turn>model``, Llama 3's header ids...), otherwise tests pass on a format no
real model uses. The templates are written here from the documented rendered formats;
like most released templates they carry no ``{% generation %}`` markers, so code under
test cannot rely on assistant masks a real checkpoint would not give it.

Rendering happens with transformers' ``trim_blocks``/``lstrip_blocks``, so each template
is a single line and newlines appear only inside Jinja string literals.

Example:
    >>> from jinja2 import Template
    >>> msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    >>> Template(TEMPLATES["qwen3_vl"]).render(messages=msgs, add_generation_prompt=True)
    '<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\\n<|im_start|>assistant\\n'
"""

from __future__ import annotations


def _parts(image: str, video: str = "") -> str:
    """Jinja body rendering ``message['content']`` (string or list of typed parts) in order."""
    video_branch = f"{{% elif part['type'] == 'video' %}}{{{{ '{video}' }}}}" if video else ""
    return (
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for part in message['content'] %}"
        f"{{% if part['type'] == 'image' %}}{{{{ '{image}' }}}}{video_branch}"
        "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
    )


_TEXT_ONLY = (
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endfor %}{% endif %}"
)
_N_IMAGES = (
    "{% set n = namespace(v=0) %}{% if message['content'] is not string %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{% set n.v = n.v + 1 %}"
    "{% endfor %}{% endif %}"
)


def _chatml(image: str, video: str, system: str | None) -> str:
    """ChatML (``<|im_start|>role\\n...<|im_end|>\\n``), as Qwen2/2.5/3-VL and InternVL use."""
    default_system = (
        "{% if loop.first and message['role'] != 'system' %}"
        f"{{{{ '<|im_start|>system\\n{system}<|im_end|>\\n' }}}}{{% endif %}}"
        if system
        else ""
    )
    return (
        "{% for message in messages %}" + default_system
        + "{{ '<|im_start|>' + message['role'] + '\\n' }}" + _parts(image, video)
        + "{{ '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
QWEN_VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"

# LLaVA-1.5 (Vicuna v1): "USER: <image>\nWhat? ASSISTANT: red</s>"
LLAVA = (
    "{% for message in messages %}" + _N_IMAGES
    + "{% if message['role'] == 'assistant' %}{{ 'ASSISTANT: ' }}" + _TEXT_ONLY + "{{ eos_token }}"
    "{% elif message['role'] == 'user' %}{{ 'USER: ' + '<image>\\n' * n.v }}" + _TEXT_ONLY + "{{ ' ' }}"
    "{% else %}" + _TEXT_ONLY + "{{ ' ' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# LLaVA-NeXT on Mistral: "[INST] <image>\nWhat? [/INST] red</s>"; a system text joins the next user turn.
LLAVA_NEXT = (
    "{% set sys = namespace(text='') %}{% for message in messages %}" + _N_IMAGES
    + "{% if message['role'] == 'system' %}{% set sys.text = message['content'] if message['content'] is string"
    " else message['content'][0]['text'] %}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' + '<image>\\n' * n.v }}"
    "{% if sys.text %}{{ sys.text + '\\n\\n' }}{% set sys.text = '' %}{% endif %}"
    + _TEXT_ONLY + "{{ ' [/INST]' }}"
    "{% else %}{{ ' ' }}" + _TEXT_ONLY + "{{ eos_token }}{% endif %}{% endfor %}"
)

# LLaVA-OneVision (Qwen2 LM): "<|im_start|>user <image>\nWhat?<|im_end|>\n<|im_start|>assistant\nred<|im_end|>\n"
LLAVA_ONEVISION = (
    "{% for message in messages %}" + _N_IMAGES
    + "{{ '<|im_start|>' + message['role'] }}{% if n.v %}{{ ' ' + '<image>' * n.v }}{% endif %}{{ '\\n' }}"
    + _TEXT_ONLY + "{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _idefics(bos: str) -> str:
    """Idefics3/SmolVLM: "User:<image>What?<end_of_utterance>\\nAssistant: red<end_of_utterance>\\n"."""
    return (
        f"{{{{ '{bos}' }}}}{{% for message in messages %}}{{{{ message['role'] | capitalize }}}}"
        "{% if message['content'] is not string and message['content'][0]['type'] == 'image' %}{{ ':' }}"
        "{% else %}{{ ': ' }}{% endif %}" + _parts("<image>")
        + "{{ '<end_of_utterance>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    )


# PaliGemma is prefix/suffix, not chat: every image as "<image>" first, then the prompt; the
# answer follows a newline. System turns are dropped. The processor itself inserts <bos>
# after the images and appends the final "\n".
PALIGEMMA = (
    "{% set n = namespace(v=0) %}{% for message in messages if message['content'] is not string %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{% set n.v = n.v + 1 %}{% endfor %}"
    "{% endfor %}{{ '<image>' * n.v }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ '\\n' }}" + _TEXT_ONLY + "{{ eos_token }}"
    "{% elif message['role'] == 'user' %}" + _TEXT_ONLY + "{% endif %}{% endfor %}"
)

# Gemma 3: "<bos><start_of_turn>user\n<start_of_image>What?<end_of_turn>\n<start_of_turn>model\n".
# Gemma has no system role: the system text is prepended to the first user turn.
GEMMA3 = (
    "{{ bos_token }}{% set sys = namespace(text='') %}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set sys.text = message['content'] if message['content'] is string"
    " else message['content'][0]['text'] %}{% else %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' }}"
    "{% if sys.text %}{{ sys.text + '\\n\\n' }}{% set sys.text = '' %}{% endif %}"
    + _parts("<start_of_image>") + "{{ '<end_of_turn>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

# Llama 3.2 Vision: "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|>What?<|eot_id|>"
MLLAMA = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}" + _parts("<|image|>")
    + "{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# A user's LLaVA-style template with a trailing-space generation prompt ("ASSISTANT: ") whose
# turns render "ASSISTANT: green\n": byte-level and SentencePiece tokenizers glue the space to
# the answer ("Ġgreen"/"▁green"), so the answer's first token starts before the answer.
LLAVA_TRAILING_SPACE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ 'USER: ' }}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}{{ '<image>\\n' }}"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{{ '\\n' }}"
    "{% elif m['role'] == 'assistant' %}{{ 'ASSISTANT: ' + m['content'][0]['text'] + '\\n' }}"
    "{% else %}{{ m['content'][0]['text'] + '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT: ' }}{% endif %}"
)

TEMPLATES: dict[str, str] = {
    "qwen2_vl": _chatml(QWEN_IMAGE, QWEN_VIDEO, "You are a helpful assistant."),
    "qwen2_5_vl": _chatml(QWEN_IMAGE, QWEN_VIDEO, "You are a helpful assistant."),
    "qwen3_vl": _chatml(QWEN_IMAGE, QWEN_VIDEO, None),
    "llava": LLAVA,
    "llava_next": LLAVA_NEXT,
    "llava_onevision": LLAVA_ONEVISION,
    "idefics3": _idefics("<|begin_of_text|>"),
    "smolvlm": _idefics("<|im_start|>"),
    "paligemma": PALIGEMMA,
    "internvl": _chatml("<IMG_CONTEXT>\\n", "<video>\\n", None),
    "gemma3": GEMMA3,
    "mllama": MLLAMA,
}
