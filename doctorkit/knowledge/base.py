"""A disease knowledge base read from JSONL, searched with BM25 over Chinese-aware terms.

One entry per line: {"name": "偏头痛", "aliases": ["头痛", ...], "概述": "...", "症状": "...", ...}.
Every other string field is kept, in file order, as text that can be injected into a prompt.

Retrieval: jieba segments Chinese into words and we add character bigrams, so a question still meets an
entry when the two segment a phrase differently; rank_bm25 scores entries. An entry whose name or alias
appears verbatim in the question gets a fixed bonus, because a named disease is the strongest signal a
patient gives. A threshold keeps questions that share only a stray term with the KB ungrounded.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import jieba
from rank_bm25 import BM25Okapi

from doctorkit.errors import DoctorKitError

NAME_BONUS = 6.0           # added once when the entry's name or an alias occurs in the question
DEFAULT_THRESHOLD = 6.0    # calibrated on data/knowledge_zh.jsonl: paraphrases score 8+, off-topic < 4.5
RELATIVE_CUTOFF = 0.4      # also drop hits below 40% of the best: a marginal second entry only eats budget
# Words that say nothing about which disease is meant: question fillers and consult politeness.
STOPWORDS = set("""
医生 大夫 你好 您好 请问 谢谢 怎么 怎么办 怎么样 什么 为什么 是不是 可以 能不能 需要 应该 还是 有点 一点
最近 这个 那个 这样 一下 一直 总是 经常 时候 之后 以后 现在 今天 明天 昨天 这两天 已经 还有 没有 不是
我们 你们 他们 自己 孩子 妈妈 爸爸 老公 老婆 家里 问题 情况 问问 请教 帮忙 知道 觉得 感觉 好像 如果
""".split())
RARE_WORD_IDF = 8.0        # a word/bigram counts only if rarer than this in general Chinese (log scale)
RARE_CHAR_IDF = 9.5        # a single character must be rarer still
_CJK = re.compile(r"[\u4e00-\u9fff]+")
_ASCII_WORD = re.compile(r"[A-Za-z0-9]+(?:\.[0-9]+)?")


@dataclass
class Entry:
    name: str
    aliases: list[str]
    fields: dict[str, str]       # field name -> text, in file order (概述, 病因, 症状, ...)
    source: str                  # "file:line", for messages


@dataclass
class Hit:
    entry: Entry
    score: float
    matched: list[str] = field(default_factory=list)   # query terms found in the entry ("=name" for a name hit)


@functools.lru_cache(maxsize=1)
def _segmenter() -> jieba.Tokenizer:
    jieba.setLogLevel(logging.WARNING)   # jieba logs its dictionary build at INFO on every process start
    return jieba.Tokenizer()


def _background_idf(seg: jieba.Tokenizer, term: str) -> float:
    """How rare `term` is in general Chinese, from the word counts in jieba's own dictionary."""
    return math.log(seg.total / (seg.FREQ.get(term, 0) + 1))


def terms(text: str, keep: frozenset[str] = frozenset()) -> list[str]:
    """Words (jieba, search mode), CJK character bigrams and single characters, lowercased ASCII words.

    The KB is too small for its own IDF to know that 时 or 工作 say nothing about a disease, so terms that
    are common in general Chinese (jieba's dictionary counts) are dropped, as are our stopwords; single
    characters must be rarer still (痒, 喘, 咳 pass; 天, 时, 头 do not). Words in `keep` (KB names and
    aliases) always stay.
    """
    seg = _segmenter()
    for word in keep - seg.FREQ.keys():
        seg.add_word(word, freq=1)   # segment names as one word without making them look common
    out = [w for w in seg.lcut_for_search(text) if len(w) >= 2 and _CJK.fullmatch(w)]
    for run in _CJK.findall(text):
        out += [run[i:i + 2] for i in range(len(run) - 1)]
        out += list(run)
    out = [t for t in out if t in keep or (t not in STOPWORDS and _background_idf(seg, t) >=
                                           (RARE_CHAR_IDF if len(t) == 1 else RARE_WORD_IDF))]
    return out + [w.lower() for w in _ASCII_WORD.findall(text)]


def parse_entry(line: str, source: str) -> Entry:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise DoctorKitError(f"{source}: not valid JSON ({err.msg})") from None
    if not isinstance(obj, dict):
        raise DoctorKitError(f"{source}: expected a JSON object, got {type(obj).__name__}")
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DoctorKitError(f"{source}: missing 'name' (a non-empty string)")
    aliases = obj.get("aliases", [])
    if isinstance(aliases, str):
        aliases = [aliases]
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise DoctorKitError(f"{source}: 'aliases' must be a list of strings")
    fields = {}
    for key, value in obj.items():
        if key in ("name", "aliases"):
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "、".join(value)
        if isinstance(value, str) and value.strip():
            fields[key] = value.strip()
    if not fields:
        raise DoctorKitError(f"{source}: entry '{name}' has no text fields (e.g. 概述, 症状, 治疗)")
    return Entry(name.strip(), [a.strip() for a in aliases if a.strip()], fields, source)


class KnowledgeBase:
    def __init__(self, entries: list[Entry], skipped: list[str] | None = None, path: str = "<memory>"):
        if not entries:
            raise DoctorKitError(f"{path}: no valid knowledge entries")
        self.entries = entries
        self.skipped = skipped or []     # "file:line: reason" for each malformed line
        self.path = path
        self._names = frozenset(n for e in entries for n in [e.name, *e.aliases])
        docs = [terms(" ".join([e.name, *e.aliases, *e.fields.values()]), self._names) for e in entries]
        self._doc_terms = [set(d) for d in docs]
        self._bm25 = BM25Okapi(docs)

    @classmethod
    def load(cls, path: str | Path) -> "KnowledgeBase":
        """Read a JSONL KB. Malformed lines are skipped and listed in `.skipped`; none valid is an error."""
        path = Path(path)
        if not path.is_file():
            raise DoctorKitError(f"{path}: knowledge base not found")
        # the one encoding detector (UTF-8, GB18030, ...); a line with bytes it cannot decode is skipped, as in
        # training data, instead of carrying lone surrogates into prompts
        from doctorkit.data.readers import read_text, undecodable

        try:
            text = read_text(path)
        except DoctorKitError:
            raise DoctorKitError(f"{path}: cannot tell the knowledge base's text encoding; save it as UTF-8") from None
        entries, skipped, seen = [], [], {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            source = f"{path}:{number}"
            try:
                if (bad := undecodable(line)) is not None:
                    raise DoctorKitError(f"{source}: {bad}")
                entry = parse_entry(line, source)
                if entry.name in seen:
                    raise DoctorKitError(f"{source}: duplicate name '{entry.name}' (first at {seen[entry.name]})")
            except DoctorKitError as err:
                skipped.append(str(err))
                continue
            seen[entry.name] = source
            entries.append(entry)
        if not entries:
            reason = f" (first problem: {skipped[0]})" if skipped else " (file is empty)"
            raise DoctorKitError(f"{path}: no valid knowledge entries{reason}")
        return cls(entries, skipped, str(path))

    def search(self, question: str, k: int = 3, threshold: float | None = DEFAULT_THRESHOLD) -> list[Hit]:
        """The k best entries for `question`, best first. Entries scoring below `threshold`, or below
        RELATIVE_CUTOFF x the best score, are dropped; threshold=None keeps all (to show near misses)."""
        query = list(dict.fromkeys(terms(question, self._names)))   # dedupe: a repeated word is not more evidence
        scores = self._bm25.get_scores(query) if query else [0.0] * len(self.entries)
        hits = []
        for entry, doc_terms, score in zip(self.entries, self._doc_terms, scores):
            matched = [t for t in query if t in doc_terms]
            named = [n for n in [entry.name, *entry.aliases] if len(n) >= 2 and n in question]
            if named:
                score += NAME_BONUS
                matched = [f"={named[0]}"] + matched
            hits.append(Hit(entry, float(score), matched))
        hits.sort(key=lambda h: -h.score)
        if threshold is not None:
            floor = max(threshold, RELATIVE_CUTOFF * hits[0].score)
            hits = [h for h in hits if h.score >= floor]
        return hits[:k]
