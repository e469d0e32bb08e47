"""The demo's caps (app.engine applies them): kept free of torch so the command line can show its defaults fast."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Limits:
    max_input_chars: int = 2000      # the user's message
    max_system_chars: int = 2000     # the system prompt (a textbox and an API argument)
    max_history_chars: int = 16000   # earlier turns sent back by the client; the oldest are dropped beyond it
    max_prompt_tokens: int = 3072    # system + history + message (+ knowledge) after the chat template
    max_seconds: float = 120.0       # one generation
    idle_seconds: float = 15.0       # nobody pulled the reply for this long: the client has gone
    max_new_tokens: int = 2048       # the slider's top
    # sampling ranges accepted from the API (the sliders' ranges)
    temperature: tuple[float, float] = (0.0, 2.0)
    top_p: tuple[float, float] = (0.05, 1.0)
    repetition_penalty: tuple[float, float] = (1.0, 2.0)


class PromptRejected(ValueError):
    """A request the demo will not run; the message is shown to the user."""
