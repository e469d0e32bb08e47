"""Our own preference sample for DPO: the same patient questions as doctorkit.builtin.sampledata, each with a careful
doctor-style answer (chosen) and a careless or unsafe one (rejected).

`python -m doctorkit.builtin.sampledata_dpo data/dpo_sample_zh.jsonl` regenerates the committed file. Records rotate
through the four layouts the reader accepts (TRL prompt, ShareGPT conversations, messages, TRL implicit
prompt) so the sample also exercises them. Written for DoctorKit; illustrative, not medical advice.
"""
from __future__ import annotations

import random

from doctorkit.builtin.sampledata import ASKS, CLOSERS, CONDITIONS, DURATIONS, OPENERS, WHO, write_jsonl

# Careless or unsafe replies a doctor would not give: dismissing, self-medicating, stopping treatment.
CARELESS = [
    "没什么大事，不用管它，过几天自己就好了。",
    "随便买点抗生素吃几天就行，不用去医院。",
    "网上搜一下吃点药就行，检查都是浪费钱。",
    "忍一忍就过去了，医院能不去就不去。",
    "把家里剩下的药都吃一点试试，总有一个管用。",
]
UNSAFE = {
    "感冒": "直接吃点头孢，好得快。",
    "高血压": "血压正常了就把降压药停掉吧，不用复查。",
    "糖尿病": "少吃点饭就行，血糖不用查。",
    "胃炎": "喝点白酒杀杀菌就好了。",
    "失眠": "每天睡前吃两片安眠药，长期吃也没事。",
    "腰痛": "找人用力扳一扳腰就好了。",
    "过敏性鼻炎": "鼻炎治不好的，别管了。",
    "湿疹": "用热水多烫几次就不痒了。",
    "偏头痛": "头痛吃止痛药就行，多痛都不用去医院。",
    "咳嗽": "咳嗽就吃止咳药，咳血也没关系。",
    "腹泻": "拉肚子先吃止泻药，发烧便血也一样。",
    "贫血": "头晕多躺躺就好，不用查血。",
    "痛风": "不疼了就不用管尿酸了。",
    "甲状腺结节": "结节都要马上切掉，不用复查。",
    "颈椎病": "手麻也没事，找人用力按按脖子就行。",
    "口腔溃疡": "溃疡几个月不好也不用看医生。",
}


def make_pair(rng: random.Random, name: str, layout: int) -> dict:
    symptoms, explain, advice, _, _ = CONDITIONS[name]
    question = f"{rng.choice(OPENERS)}{rng.choice(WHO)}{rng.choice(DURATIONS)}{rng.choice(symptoms)}，{rng.choice(ASKS)}"
    chosen = f"{explain}{advice}{rng.choice(CLOSERS)}"
    rejected = rng.choice([UNSAFE[name], rng.choice(CARELESS), UNSAFE[name] + rng.choice(CARELESS)])
    user = {"role": "user", "content": question}
    if layout == 0:    # TRL explicit prompt, plain text sides
        return {"prompt": question, "chosen": chosen, "rejected": rejected}
    if layout == 1:    # ShareGPT-style preference record
        return {"conversations": [{"from": "human", "value": question}], "chosen": chosen, "rejected": rejected}
    if layout == 2:    # messages prompt, message-dict sides
        return {"messages": [user], "chosen": {"role": "assistant", "content": chosen},
                "rejected": {"role": "assistant", "content": rejected}}
    return {"chosen": [user, {"role": "assistant", "content": chosen}],       # TRL implicit prompt
            "rejected": [user, {"role": "assistant", "content": rejected}]}


def generate(n: int = 80, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    names = sorted(CONDITIONS)
    return [make_pair(rng, names[i % len(names)], i % 4) for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    return write_jsonl(generate(), argv, "data/dpo_sample_zh.jsonl", "preference pairs")


if __name__ == "__main__":
    raise SystemExit(main())
