"""Chat templates rendered on our side: a model's jinja template (from a GGUF, a server or a
file) or a built-in one, compiled in a sandbox as transformers does, around a request's
earlier turns, its prompt as the last user turn, and its prefill as the start of the
assistant turn, left open so the model continues it.

Shared by `llamacpp:` (the GGUF's own template) and `openai:` (`--model-arg chat_template`,
which renders the turns here and sends the text to /completions, so an edited CoT can be
prefilled on any server with a completions endpoint).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from faithcheck.errors import BadInput
from faithcheck.records import GenerationRequest

# End-of-turn markers of common chat formats: a chat-prompted generation stops there.
END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>")

# Built-in formats. None writes a BOS: a completions server's tokenizer adds the model's own.
BUILTIN = {
    # ChatML (Qwen, many fine-tunes): llama-cpp-python's `--chat_format chatml` renders the same
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    # Gemma 2/3: no system role (a system prompt opens the first user turn), turns must alternate
    "gemma": (
        "{% if messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] + '\n\n' %}"
        "{% set turns = messages[1:] %}{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
        "{% for m in turns %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
        "{{ (prefix if loop.first else '') + m['content'] | trim }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
    # Llama 3.0 (3.1+ add a dated system header: give their own template, or chat_template=auto)
    "llama3": (
        "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
}


class ChatTemplate:
    """One template, compiled once in jinja2's immutable sandbox (a template is model-supplied
    text: it may not touch Python objects). `raise_exception` in it becomes BadInput naming
    `owner`, as transformers raises for a conversation the template refuses."""

    def __init__(self, source: str, owner: str):
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.source, self.owner = source, owner
        self.digest = hashlib.sha256(source.encode()).hexdigest()[:12]
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(message: str) -> None:
            raise BadInput(f"{owner}: chat template: {message}")

        env.globals["raise_exception"] = raise_exception
        try:
            self._jinja = env.from_string(source)
        except TemplateError as e:
            raise BadInput(f"{owner}: chat template does not compile: {e}") from None
        self.end_of_turn = tuple(m for m in END_OF_TURN if m in source)

    def render(self, req: GenerationRequest, bos_token: str = "", eos_token: str = "") -> str:
        """The text the model reads: earlier turns, the prompt as a user turn, the open assistant turn."""
        messages = [{"role": role, "content": content} for role, content in req.context]
        messages.append({"role": "user", "content": req.prompt})
        rendered = self._jinja.render(messages=messages, add_generation_prompt=True,
                                      bos_token=bos_token, eos_token=eos_token)
        return rendered + req.prefill


def template_source(option: str, flag: str = "--model-arg chat_template") -> str:
    """The jinja source a `chat_template` option names: a built-in format or a file."""
    if option in BUILTIN:
        return BUILTIN[option]
    path = Path(option).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{flag}={option}: expected none, auto, {', '.join(BUILTIN)} or a readable jinja file "
                       f"({type(e).__name__}: {e})") from None
