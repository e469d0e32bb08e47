"""Knowledge base + prompt designer: retrieval on our sample KB, threshold, budget, malformed lines."""
import json
from pathlib import Path

import pytest

from doctorkit.builtin.tiny import build_tokenizer
from doctorkit.errors import DoctorKitError
from doctorkit.knowledge import DEFAULT_THRESHOLD, KnowledgeBase, KnowledgeSettings, count_tokens, ground, grounder
from doctorkit.knowledge.cli import main as knowledge_main
from doctorkit.knowledge.prompt import HEADER
from doctorkit.recipe import DataConfig

KB_PATH = "data/knowledge_zh.jsonl"


@pytest.fixture(scope="module")
def kb():
    return KnowledgeBase.load(KB_PATH)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


# Paraphrases written for the test: none names the entry; several use only lay symptoms or an alias.
PARAPHRASES = [
    ("我一边脑袋跳着疼，还怕光，想吐", "偏头痛"),
    ("最近老是口渴，喝水特别多，体重还掉了", "糖尿病"),
    ("大脚趾半夜突然红肿，疼得厉害", "痛风"),
    ("一到春天鼻子就痒，老打喷嚏流清鼻涕", "过敏性鼻炎"),
    ("胃胀反酸烧心，饭后更明显", "慢性胃炎"),
    ("脸色发白，总是没力气，上楼就心慌", "缺铁性贫血"),
    ("低头看手机久了脖子僵，手指发麻", "颈椎病"),
    ("小便的时候火辣辣的，老想上厕所", "尿路感染"),
    ("喘不上气，胸口闷，晚上喘得厉害", "支气管哮喘"),
    ("手上起红疹子，很痒，抓破了流水", "湿疹"),
    ("我妈血压高，要一直吃药吗", "高血压"),          # alias 血压高
    ("拉肚子一天好几次，能吃止泻药吗", "急性腹泻"),    # alias 拉肚子
    ("着凉了，流鼻涕嗓子疼", "感冒"),                  # alias 着凉
]
UNRELATED = ["今天天气怎么样？", "Python 怎么读取文件？", "怎么用git合并分支", "帮我写一首关于春天的诗",
             "推荐一部好看的电影", "明天北京会下雨吗",
             "我想学习编程，请问Python和Java哪个更适合初学者，学完以后好找工作吗？我每天晚上有两个小时可以学习。",
             "公司年终总结报告应该怎么写，需要包括哪些部分，有没有模板可以参考？"]


def test_sample_kb_loads_cleanly(kb):
    assert len(kb.entries) >= 15 and kb.skipped == []
    assert all({"概述", "症状", "治疗"} <= set(e.fields) for e in kb.entries)


@pytest.mark.parametrize("question,expected", PARAPHRASES)
def test_paraphrased_question_retrieves_its_entry_first(kb, question, expected):
    hits = kb.search(question, k=3)
    assert hits, f"{question} stayed ungrounded"
    assert hits[0].entry.name == expected, [(h.entry.name, round(h.score, 1)) for h in hits]


def test_incidental_alias_does_not_hide_the_real_topic(kb):
    # "疼得睡不着" contains the 失眠 alias 睡不着 and wins the bonus; 痛风 must still be retrieved.
    names = [h.entry.name for h in kb.search("大脚趾半夜突然红肿，疼得睡不着", k=3)]
    assert "痛风" in names


@pytest.mark.parametrize("question", UNRELATED)
def test_unrelated_question_stays_ungrounded(kb, question):
    assert kb.search(question, k=3) == []
    messages, used = ground([{"role": "user", "content": question}], kb)
    assert used == [] and messages == [{"role": "user", "content": question}]


def test_threshold_is_what_decides(kb):
    hit = kb.search("胃胀反酸烧心", k=1)[0]
    assert kb.search("胃胀反酸烧心", k=1, threshold=hit.score + 0.01) == []
    assert kb.search("今天天气怎么样？", k=3, threshold=None)   # scored, just not above the threshold
    assert DataConfig().knowledge_threshold == DEFAULT_THRESHOLD


@pytest.mark.parametrize("budget", [40, 90, 150, 400, 2000])
def test_budget_in_tokens_is_never_exceeded(kb, tokenizer, budget):
    question = "鼻子痒，老打喷嚏流鼻涕，嗓子疼"   # two entries (鼻炎, 感冒) compete for the budget
    messages, used = ground([{"role": "user", "content": question}], kb, tokenizer, budget=budget, top_k=3)
    if not used:
        assert budget < count_tokens(HEADER, tokenizer) + 10
        return
    system = messages[0]
    assert system["role"] == "system" and messages[1]["content"] == question
    assert count_tokens(system["content"], tokenizer) <= budget
    assert f"【{used[0].entry.name}】" in system["content"]
    if budget >= 2000:   # room for everything: nothing is cut and both entries are in
        assert len(used) == 2 and "…" not in system["content"]
        assert used[0].entry.fields["治疗"] in system["content"]


def test_budget_in_characters_without_tokenizer(kb):
    messages, used = ground([{"role": "user", "content": "胃胀反酸烧心"}], kb, None, budget=120)
    assert used and len(messages[0]["content"]) <= 120 and messages[0]["content"].endswith("…")


def test_existing_system_prompt_is_kept_and_followups_stay_grounded(kb, tokenizer):
    conversation = [{"role": "system", "content": "你是全科医生。"},
                    {"role": "user", "content": "大脚趾关节红肿，尿酸五百多"},
                    {"role": "assistant", "content": "考虑痛风。"},
                    {"role": "user", "content": "需要一直吃药吗？"}]
    messages, used = ground(conversation, kb, tokenizer, budget=300)
    assert [h.entry.name for h in used][:1] == ["痛风"]
    assert messages[0]["content"].startswith("你是全科医生。\n\n" + HEADER)
    assert messages[1:] == conversation[1:] and conversation[0]["content"] == "你是全科医生。"  # input untouched


def test_grounder_from_recipe_keys_matches_ground(kb, tokenizer):
    data = DataConfig(knowledge=KB_PATH, knowledge_budget=150, knowledge_top_k=1)
    apply = grounder(KnowledgeSettings.from_data_config(data), tokenizer)
    conversation = [{"role": "user", "content": "晚上睡不着，凌晨就醒"}]
    assert apply(conversation)[0] == ground(conversation, kb, tokenizer, 150, 1)[0]
    assert grounder(KnowledgeSettings.from_data_config(DataConfig()))(conversation) == (conversation, [])


def test_malformed_lines_are_skipped_and_counted(tmp_path, capsys):
    good = {"name": "测试病", "aliases": ["测病"], "概述": "一种测试用的病。"}
    lines = [json.dumps(good, ensure_ascii=False), "{not json", json.dumps({"aliases": ["x"], "概述": "无名"}),
             json.dumps({"name": "空", "aliases": "ok"}), json.dumps(good, ensure_ascii=False), ""]
    path = tmp_path / "kb.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    kb = KnowledgeBase.load(path)
    assert [e.name for e in kb.entries] == ["测试病"]
    assert [s.split(": ")[0] for s in kb.skipped] == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    assert "not valid JSON" in kb.skipped[0] and "missing 'name'" in kb.skipped[1]
    assert "no text fields" in kb.skipped[2] and "duplicate name" in kb.skipped[3]
    assert knowledge_main(["check", str(path)]) == 0
    captured = capsys.readouterr()
    assert f"warning: skipped {path}:2: not valid JSON" in captured.err and "4 malformed lines skipped" in captured.out


def test_kb_with_nothing_valid_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('["a list"]\n', encoding="utf-8")
    with pytest.raises(DoctorKitError, match=r"no valid knowledge entries \(first problem: .*bad.jsonl:1: expected a JSON object"):
        KnowledgeBase.load(path)
    with pytest.raises(DoctorKitError, match="knowledge base not found"):
        KnowledgeBase.load(tmp_path / "missing.jsonl")


def test_search_command_prints_what_is_injected(capsys):
    assert knowledge_main(["search", KB_PATH, "体检B超发现甲状腺有个结节", "--tokenizer", "builtin:tiny",
                           "--budget", "120"]) == 0
    out = capsys.readouterr().out
    assert "used" in out and "甲状腺结节" in out and "of 120 tokens" in out and HEADER in out
    assert knowledge_main(["search", KB_PATH, "今天天气怎么样？"]) == 0
    assert "not grounded" in capsys.readouterr().out


def test_training_data_is_grounded_like_serving(tokenizer):
    from doctorkit.data import prepare
    from doctorkit.recipe import Recipe

    recipe = Recipe(data=DataConfig(knowledge=KB_PATH, knowledge_budget=120, max_samples=20))
    plain = Recipe(data=DataConfig(max_samples=20))
    grounded_rows, plain_rows = prepare(recipe, tokenizer).train, prepare(plain, tokenizer).train
    from doctorkit.data import read_conversations
    first = read_conversations(recipe.data, recipe.data.path)[0]
    expected = tokenizer.apply_chat_template(ground(first, KnowledgeBase.load(KB_PATH), tokenizer, 120)[0],
                                             tokenize=False)
    row = grounded_rows[0]
    assert tokenizer.decode(row["input_ids"]) == expected and HEADER in expected
    # knowledge is context, never a training target: the supervised tokens are the same as without it
    supervised = [[t for t, lab in zip(r["input_ids"], r["labels"]) if lab != -100] for r in (row, plain_rows[0])]
    assert supervised[0] == supervised[1]


def test_kb_in_gb18030_reads_as_the_utf8_one(kb, tmp_path):
    """Knowledge bases go through the training data's encoding detector (doctorkit.data.readers.read_text)."""
    legacy = tmp_path / "kb_gb18030.jsonl"
    legacy.write_bytes(Path(KB_PATH).read_text(encoding="utf-8").encode("gb18030"))
    assert [e.name for e in KnowledgeBase.load(legacy).entries] == [e.name for e in kb.entries]
