"""Is a conversation trainable? Each rejection has a short reason name, counted in the data report.

Reasons (also the keys of `DataReport.samples_skipped`):
  malformed        not valid JSON / CSV, or a record missing its fields (reported as file:line)
  empty            no messages at all
  empty_message    a message with blank content
  not_alternating  turns are not user, assistant, user, ... (system allowed only first)
  ends_on_user     the last turn is the user's: no reply to learn from
  overlong         longer than train.max_seq_len with data.overlong: skip
  truncated_away   truncation left no assistant token to learn from
  template         the chat template renders earlier turns differently once later ones exist
"""
from __future__ import annotations

REASONS = ("malformed", "empty", "empty_message", "not_alternating", "ends_on_user", "overlong",
           "truncated_away", "template")


def check_conversation(messages: list[dict]) -> str | None:
    """None if the conversation can be trained on, else the reason name."""
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not turns:
        return "empty"
    if any(not m["content"].strip() for m in messages):
        return "empty_message"
    for index, message in enumerate(turns):
        if message["role"] != ("user" if index % 2 == 0 else "assistant"):
            return "not_alternating"
    if turns[-1]["role"] == "user":
        return "ends_on_user"
    return None


def with_system_prompt(messages: list[dict], system_prompt: str | None) -> list[dict]:
    """Adds data.system_prompt to conversations that bring no system turn of their own."""
    if not system_prompt or (messages and messages[0]["role"] == "system"):
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]
