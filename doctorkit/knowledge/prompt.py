"""The prompt designer: turn a conversation and a knowledge base into grounded messages.

`ground()` is the ONE place that decides how knowledge enters a prompt. Training data preparation,
`doctorkit chat`, the demo and evaluation all call it, so a model is served exactly the format it was
trained on. The rules:
- the query is every user turn so far, joined (a follow-up such as "要吃药吗？" keeps the disease named
  earlier); for a training conversation the last assistant turn therefore sees exactly what serving shows;
- the knowledge goes into the system message: appended to an existing one, or a new first message;
- the knowledge text never exceeds `budget` tokens (counted with `tokenizer`; characters without one):
  whole entries in score order, fields in file order, the first one that does not fit cut to fit.
"""
from __future__ import annotations

from dataclasses import dataclass

from doctorkit.knowledge.base import DEFAULT_THRESHOLD, Hit, KnowledgeBase

HEADER = "以下是知识库中可能相关的资料，仅供参考；与患者情况不符时请忽略，不要编造资料中没有的内容。"
ELLIPSIS = "…"
MIN_FIELD_CHARS = 8        # an entry cut to fewer characters of text than this would only cost tokens


@dataclass
class KnowledgeSettings:
    """What the recipe's data.knowledge* keys (and the demo/chat flags) choose."""
    path: str
    top_k: int = 3
    budget: int = 400
    threshold: float = DEFAULT_THRESHOLD

    @classmethod
    def from_data_config(cls, data) -> "KnowledgeSettings | None":
        if not data.knowledge:
            return None
        return cls(data.knowledge, data.knowledge_top_k, data.knowledge_budget, data.knowledge_threshold)


def count_tokens(text: str, tokenizer=None) -> int:
    if tokenizer is None:
        return len(text)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _longest_fitting(prefix: str, text: str, tokenizer, budget: int) -> int:
    """Most characters of `text` such that prefix + text[:n] + ELLIPSIS fits the budget (binary search)."""
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if count_tokens(prefix + text[:mid] + ELLIPSIS, tokenizer) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def _entry_text(prefix: str, hit: Hit, tokenizer, budget: int) -> tuple[str, bool]:
    """The text of one entry that fits after `prefix` ("" if none of it does), and whether it was cut."""
    out, fields = f"\n【{hit.entry.name}】", 0
    for key, value in hit.entry.fields.items():
        line = f"\n{key}：{value}"
        if count_tokens(prefix + out + line, tokenizer) <= budget:
            out, fields = out + line, fields + 1
            continue
        label = f"\n{key}："
        n = _longest_fitting(prefix + out + label, value, tokenizer, budget)
        if n >= MIN_FIELD_CHARS:
            out, fields = out + label + value[:n] + ELLIPSIS, fields + 1
        return (out if fields else ""), True
    return out, False


def knowledge_text(hits: list[Hit], tokenizer=None, budget: int = 400) -> tuple[str, list[Hit]]:
    """The injected text for `hits` within `budget`, and the hits that made it in (the last possibly cut)."""
    text, used = HEADER, []
    if count_tokens(text, tokenizer) > budget:
        return "", []
    for hit in hits:
        piece, cut = _entry_text(text, hit, tokenizer, budget)
        if piece:
            text += piece
            used.append(hit)
        if cut:
            break
    if not used:
        return "", []
    # BPE merges across the pieces' seams could in principle add a token; never hand out more than budget.
    while count_tokens(text, tokenizer) > budget:
        text = text[:-2] + ELLIPSIS
    return text, used


def user_query(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages if m.get("role") == "user")


def ground(messages: list[dict], kb: KnowledgeBase | None, tokenizer=None, budget: int = 400, top_k: int = 3,
           threshold: float = DEFAULT_THRESHOLD) -> tuple[list[dict], list[Hit]]:
    """Grounded copy of `messages` and the entries used. Unchanged copy and [] when nothing relevant."""
    messages = [dict(m) for m in messages]
    if kb is None:
        return messages, []
    hits = kb.search(user_query(messages), k=top_k, threshold=threshold)
    text, used = knowledge_text(hits, tokenizer, budget)
    if not used:
        return messages, []
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{text}"
    else:
        messages.insert(0, {"role": "system", "content": text})
    return messages, used


def grounder(settings: KnowledgeSettings | None, tokenizer=None):
    """A one-argument `messages -> (messages, hits)` built from settings (identity when settings is None)."""
    kb = KnowledgeBase.load(settings.path) if settings else None

    def apply(messages: list[dict]) -> tuple[list[dict], list[Hit]]:
        if settings is None:
            return [dict(m) for m in messages], []
        return ground(messages, kb, tokenizer, settings.budget, settings.top_k, settings.threshold)
    return apply
