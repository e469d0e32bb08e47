"""A de-identification test set: synthetic identifiers written into our own sample dialogs.

Each dialog of data/sample_zh.jsonl gets one to three identifier sentences, in the ways people write them
(inline, labelled "姓名：", spaced numbers, an address in one run of text, a doctor greeting the patient by
name), in the patient's or the doctor's turn. Every value is made up here; the names come from a list
written for this file (not the scrubber's own lists), so name recall is not measured on what it knows.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from doctorkit.deid.patterns import id_check_digit, luhn_ok

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample_zh.jsonl"

FULL_NAMES = ("王建军 李秀兰 张伟 刘桂芝 陈志刚 杨丽娟 赵国庆 黄晓燕 周海波 吴春花 徐子豪 孙梦琪 马俊峰 朱玉珍 胡振华 "
              "郭佳慧 何冬梅 林宏伟 罗素芬 高文斌 郑雅琴 梁家豪 谢淑华 宋志远 唐雪梅 许国强 韩美玲 冯德胜 邓丽君 曹永福 "
              "彭小燕 曾宪平 肖红霞 田建华 董卫东 潘金凤 袁立新 蔡文静 蒋明辉 余桂英 杜海燕 叶振宇 程素梅 魏长青 苏晓明 "
              "吕凤英 丁国华 任志勇 沈慧敏 姚秀云 卢少华 姜春生 崔玉兰 钟家乐 谭丽萍 陆逸飞 汪淑珍 范文涛 金秀珠 石磊 "
              "欧阳晨曦 司马文轩 诸葛亮平 上官婉儿").split()
EN_NAMES = ["John Smith", "Mary Johnson", "Robert Brown", "Linda Davis", "Michael Garcia", "Susan Martinez"]
CITIES = [("浙江省", "杭州市", "西湖区"), ("广东省", "广州市", "天河区"), ("四川省", "成都市", "武侯区"),
          ("", "北京市", "朝阳区"), ("", "上海市", "浦东新区"), ("湖北省", "武汉市", "洪山区"), ("江苏省", "南京市", "鼓楼区")]
ROADS = ["文三路", "中山大道", "人民南路", "建国路", "张杨路", "珞喻路", "北京西路", "解放大街", "学院路"]
REGIONS = ["330106", "440106", "510107", "110105", "310115", "420111", "320106"]


def _digits(rng, n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def _id18(rng):
    first = rng.choice(REGIONS) + f"{rng.randrange(1940, 2006)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}" \
        + _digits(rng, 3)
    return first + id_check_digit(first)


def _bank(rng):
    while True:
        number = "62" + _digits(rng, rng.choice([14, 17]))
        if luhn_ok(number):
            return number


def _mobile(rng):
    return "1" + rng.choice("3456789") + _digits(rng, 9)


def _spaced(number, groups):
    out, i = [], 0
    for g in groups:
        out.append(number[i:i + g])
        i += g
    return " ".join(out)


def _address(rng):
    province, city, district = rng.choice(CITIES)
    door = f"{rng.randrange(1, 300)}号"
    if rng.random() < 0.6:
        door += f"{rng.randrange(1, 30)}栋{rng.randrange(1, 6)}单元{rng.randrange(1, 30)}0{rng.randrange(1, 5)}室"
    return (province if rng.random() < 0.5 else "") + city + district + rng.choice(ROADS) + door


# type -> templates; {v} is the identifier as it appears (what must disappear), other fields fill context
TEMPLATES = {
    "NAME": ["姓名：{v}。", "我叫{v}，", "{v}你好，", "我是{v}的家属，", "{v}医生说要复查，", "我爸{v}今年六十了，",
             "患者{v}，男，", "帮我妈{v}问一下，", "我老婆{v}也这样，", "{v}，您好，"],
    "HONORIFIC": ["{v}您好，", "请问{v}，", "{v}让我来问问，", "我是{v}，"],
    "ID": ["身份证号{v}，", "身份证：{v}，", "我的身份证是{v}，", "证件号码 {v}，", "{v}是我的身份证，"],
    "PHONE": ["电话{v}，", "手机 {v}，", "有事打{v}，", "联系方式：{v}，", "我的号码是{v}，"],
    "EMAIL": ["邮箱 {v}，", "报告发到{v}，", "email: {v}，"],
    "ADDRESS": ["家住{v}，", "地址：{v}，", "我住在{v}，", "现住址{v}，", "寄到{v}。"],
    "RECORD": ["住院号：{v}，", "病案号 {v}，", "门诊号{v}，", "我的病历号是{v}，", "就诊卡号：{v}，"],
    "INSURANCE": ["医保卡号：{v}，", "社保卡号 {v}，", "医保号是{v}，"],
    "BANK": ["银行卡 {v}，", "退款打到{v}，", "卡号{v}，"],
    "PLATE": ["车牌{v}，", "我开的是{v}的车，"],
    "URL": ["检查结果在{v} 可以看，", "网址：{v} ，"],
    "IP": ["服务器地址 {v}，"],
    "DATE": ["{v}来看过，", "出生日期：{v}，", "上次是{v}复查的，", "{v}做的手术，"],
    "AGE": ["我奶奶{v}了，", "患者{v}，", "老人家{v}，"],
    "EN": ["My name is {v}. ", "Dr. {v} said ", "Please call {v}. ", "Email {v} please. ", "I live at {v}. "],
}
HONORIFICS = ["女士", "先生", "医生", "大夫", "主任", "阿姨", "老师"]


def identifier(rng: random.Random, kind: str) -> tuple[str, str]:
    """(type as scored, value as written) for one made-up identifier."""
    if kind == "NAME":
        return "NAME", rng.choice(FULL_NAMES)
    if kind == "HONORIFIC":
        return "NAME", rng.choice(FULL_NAMES)[0] + rng.choice(HONORIFICS)
    if kind == "ID":
        number = _id18(rng) if rng.random() < 0.85 else rng.choice(REGIONS) + _digits(rng, 2) + "0512" + _digits(rng, 3)
        return "ID", _spaced(number, [6, 8, 4]) if len(number) == 18 and rng.random() < 0.3 else number
    if kind == "PHONE":
        mobile = _mobile(rng)
        return "PHONE", rng.choice([mobile, _spaced(mobile, [3, 4, 4]), mobile[:3] + "-" + mobile[3:7] + "-" + mobile[7:],
                                    "+86 " + mobile, "010-" + _digits(rng, 8), "(021)" + _digits(rng, 8),
                                    "0571 " + _digits(rng, 4) + " " + _digits(rng, 4)])
    if kind == "EMAIL":
        return "EMAIL", rng.choice(["zhang.wei", "liuxl88", "patient_2023", "chen-hm"]) + "@" + \
            rng.choice(["163.com", "qq.com", "hospital.org.cn", "gmail.com"])
    if kind == "ADDRESS":
        return "ADDRESS", _address(rng)
    if kind == "RECORD":
        return "RECORD", rng.choice(["ZY", "MZ", "A", ""]) + _digits(rng, rng.randrange(6, 11))
    if kind == "INSURANCE":
        return "INSURANCE", rng.choice(["", "H", "YB"]) + _digits(rng, rng.randrange(9, 13)) + rng.choice(["", "X"])
    if kind == "BANK":
        number = _bank(rng)
        return "BANK", _spaced(number, [4, 4, 4, 4, len(number) - 16]).strip() if rng.random() < 0.5 else number
    if kind == "PLATE":
        return "PLATE", rng.choice("京沪粤浙川鄂苏") + rng.choice("ABCDE") + rng.choice(["", "·"]) + \
            rng.choice("0123456789ABCDEFG") + _digits(rng, 4)
    if kind == "URL":
        return "URL", f"https://report.hospital{rng.randrange(100)}.cn/r/{_digits(rng, 6)}"
    if kind == "IP":
        return "IP", f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if kind == "DATE":
        y, m, d = rng.randrange(1940, 2025), rng.randrange(1, 13), rng.randrange(1, 29)
        return "DATE", rng.choice([f"{y}年{m}月{d}日", f"{m}月{d}号", f"{y}-{m:02d}-{d:02d}", f"{y}/{m}/{d}",
                                   f"{y}.{m:02d}.{d:02d}", f"{m}月{d}日"])
    if kind == "AGE":
        return "AGE", f"{rng.randrange(90, 106)}岁"
    # English identifiers inside Chinese dialogs (and English dialogs sent to a translation teacher)
    choice = rng.randrange(5)
    value = [rng.choice(EN_NAMES), rng.choice(EN_NAMES).split()[1], f"(555) {_digits(rng, 3)}-{_digits(rng, 4)}",
             f"{rng.choice(EN_NAMES).split()[0].lower()}@example.org", f"{rng.randrange(10, 999)} Oak Street"][choice]
    kind_of = ["NAME", "NAME", "PHONE", "EMAIL", "ADDRESS"][choice]
    return kind_of, value


def make_testset(seed: int = 0, per_dialog: tuple[int, int] = (1, 3)) -> list[dict]:
    """[{"id", "messages", "identifiers": [{"type", "value"}]}], one per sample dialog."""
    rng = random.Random(seed)
    kinds = list(TEMPLATES)
    rows = []
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        messages = [dict(m) for m in record["messages"]]
        found = []
        for _ in range(rng.randint(*per_dialog)):
            kind = rng.choice(kinds)
            scored, value = identifier(rng, kind)
            template = TEMPLATES["EN"][_en_slot(scored, value)] if kind == "EN" else rng.choice(TEMPLATES[kind])
            turns = [i for i, m in enumerate(messages) if m["role"] != "system"]
            turn = rng.choice(turns)
            messages[turn]["content"] = template.format(v=value) + messages[turn]["content"]
            found.append({"type": scored, "value": value})
        rows.append({"id": record["id"], "messages": messages, "identifiers": found})
    return rows


def _en_slot(kind: str, value: str) -> int:
    if kind == "NAME":
        return 0 if " " in value else 1
    return {"PHONE": 2, "EMAIL": 3, "ADDRESS": 4}[kind]


def clean_texts() -> list[str]:
    """Identifier-free medical text of ours: every turn of the sample, eval and preference dialogs."""
    texts = []
    for name in ("sample_zh.jsonl", "eval_dialog_zh.jsonl"):
        for line in (ROOT / "data" / name).read_text(encoding="utf-8").splitlines():
            texts += [m["content"] for m in json.loads(line)["messages"]]
    for line in (ROOT / "data" / "dpo_sample_zh.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts += [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in row.items() if k != "id"]
    return texts


def knowledge_texts() -> list[str]:
    """Every field of our knowledge base: disease names, aliases and the drugs named in the treatments."""
    texts = []
    for line in (ROOT / "data" / "knowledge_zh.jsonl").read_text(encoding="utf-8").splitlines():
        for value in json.loads(line).values():
            texts += value if isinstance(value, list) else [value]
    return texts
