"""Loss masks token by token for the ChatML (Qwen2.5), GLM-4 and Llama-3 formats.

The expected ids and labels are built independently, piece by piece, from each format's documented layout;
the data code only ever sees the tokenizer's chat template.
"""
import json

import pytest

from doctorkit.builtin.tiny import build_tokenizer
from doctorkit.data import IGNORE, tokenize_conversation

SYSTEM = {"role": "system", "content": "你是一名耐心、专业的全科医生，用通俗的中文回答患者的问题。"}
SINGLE = [{"role": "user", "content": "医生您好，我最近一周头痛，该怎么办？"},
          {"role": "assistant", "content": "注意多喝温水、好好休息。"}]
MULTI = SINGLE + [{"role": "user", "content": "需要吃抗生素吗？"},
                  {"role": "assistant", "content": "普通感冒是病毒感染，抗生素没有用。"},
                  {"role": "user", "content": "水果还能吃吗？"},
                  {"role": "assistant", "content": "可以适量吃低糖水果。"}]
CASES = [SINGLE, [SYSTEM, *SINGLE], MULTI, [SYSTEM, *MULTI]]


def expected_pieces(fmt: str, messages: list[dict], last_only: bool) -> list[tuple[str, bool]]:
    """(text, supervised) in the order each format writes them."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")

    def sup(i):
        return messages[i]["role"] == "assistant" and (not last_only or i == last)

    pieces = []
    if fmt == "chatml":
        for i, m in enumerate(messages):
            pieces += [(f"<|im_start|>{m['role']}\n", False), (m["content"], sup(i)), ("<|im_end|>", sup(i)),
                       ("\n", False)]
    elif fmt == "llama3":
        pieces.append(("<|begin_of_text|>", False))
        for i, m in enumerate(messages):
            pieces += [(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n", False),
                       (m["content"].strip(), sup(i)), ("<|eot_id|>", sup(i))]
    elif fmt == "glm4":  # no terminator: the next <|user|> ends a reply, the final one gets <|endoftext|>
        pieces.append(("[gMASK]<sop>", False))
        for i, m in enumerate(messages):
            pieces += [(f"<|{m['role']}|>", i > 0 and sup(i - 1)), ("\n", False), (m["content"], sup(i))]
        pieces.append(("<|endoftext|>", True))
    return pieces


def supervised_spans(tokenizer, result: dict) -> list[str]:
    spans, current = [], []
    for token, label in zip(result["input_ids"], result["labels"]):
        if label != IGNORE:
            assert label == token
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    return spans + ([tokenizer.decode(current)] if current else [])


@pytest.mark.parametrize("fmt", ["chatml", "glm4", "llama3"])
@pytest.mark.parametrize("last_only", [False, True])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_mask_token_by_token(fmt, last_only, case):
    tokenizer = build_tokenizer(fmt)
    messages = CASES[case]
    result = tokenize_conversation(tokenizer, messages, 1024, "last_turn" if last_only else "all_turns")
    ids, labels = [], []
    for text, supervised in expected_pieces(fmt, messages, last_only):
        piece = tokenizer.encode(text, add_special_tokens=False)
        ids += piece
        labels += piece if supervised else [IGNORE] * len(piece)
    assert result["input_ids"] == ids
    assert result["labels"] == labels
    assert not result["truncated"]


@pytest.mark.parametrize("fmt,end", [("chatml", ["<|im_end|>"] * 3), ("llama3", ["<|eot_id|>"] * 3),
                                     ("glm4", ["<|user|>", "<|user|>", "<|endoftext|>"])])
def test_decoded_supervised_text_is_each_reply_and_its_terminator(fmt, end):
    tokenizer = build_tokenizer(fmt)
    result = tokenize_conversation(tokenizer, [SYSTEM, *MULTI], 1024)
    replies = [m["content"] for m in MULTI if m["role"] == "assistant"]
    assert supervised_spans(tokenizer, result) == [r + e for r, e in zip(replies, end)]
    last = tokenize_conversation(tokenizer, [SYSTEM, *MULTI], 1024, train_on="last_turn")
    assert supervised_spans(tokenizer, last) == [replies[-1] + ("<|endoftext|>" if fmt == "glm4" else end[-1])]


def test_template_injecting_a_default_system_prompt_and_date_is_never_supervised():
    # Qwen2.5 adds a default system prompt, Llama-3.1 a "Cutting Knowledge Date": prefix diffing ignores both.
    tokenizer = build_tokenizer("chatml")
    tokenizer.chat_template = (
        "{%- if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nCutting Knowledge Date: 2023\n"
        "You are a helpful assistant.<|im_end|>\n' }}{%- endif %}" + tokenizer.chat_template)
    result = tokenize_conversation(tokenizer, MULTI, 1024)
    assert supervised_spans(tokenizer, result) == [m["content"] + "<|im_end|>" for m in MULTI[1::2]]
    assert "Cutting" in tokenizer.decode(result["input_ids"])


def test_template_that_rewrites_earlier_turns_is_skipped_not_mislabelled():
    tokenizer = build_tokenizer("chatml")
    tokenizer.chat_template = "{{ messages | length }}" + tokenizer.chat_template
    assert tokenize_conversation(tokenizer, MULTI, 1024) == "template"
    assert tokenize_conversation(tokenizer, MULTI, 1024, train_on="last_turn") == "template"


def test_truncation_keeps_max_seq_len_tokens_and_flags_it():
    tokenizer = build_tokenizer("chatml")
    full = tokenize_conversation(tokenizer, MULTI, 1024)
    cut = tokenize_conversation(tokenizer, MULTI, 40)
    assert cut["truncated"] and len(cut["input_ids"]) == 40
    assert cut["input_ids"] == full["input_ids"][:40] and cut["labels"] == full["labels"][:40]
    assert tokenize_conversation(tokenizer, MULTI, 40, overlong="skip") == "overlong"
    assert tokenize_conversation(tokenizer, MULTI, 12) == "truncated_away"  # cut inside the first question


def test_template_that_raises_is_counted_with_its_message(tmp_path):
    from doctorkit.data import prepare
    from doctorkit.errors import DoctorKitError
    from doctorkit.recipe import Recipe
    tokenizer = build_tokenizer("chatml")
    tokenizer.chat_template = ("{%- if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
                               "supported') }}{%- endif %}" + tokenizer.chat_template)
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"messages": m}) for m in [SINGLE, [SYSTEM, *SINGLE]]))
    report = prepare(Recipe.model_validate({"data": {"path": str(path)}}), tokenizer).report
    assert report.samples_used == 1 and report.samples_skipped == {"template": 1}
    assert report.problems == ["chat template: System role not supported"]
    path.write_text(json.dumps({"messages": [SYSTEM, *SINGLE]}))
    with pytest.raises(DoctorKitError, match=r"\(template 1\); first problem: chat template: System role"):
        prepare(Recipe.model_validate({"data": {"path": str(path)}}), tokenizer)
