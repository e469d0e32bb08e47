"""Our own bundled sample: short Chinese doctor–patient exchanges written by us, expanded by templates.

`python -m doctorkit.builtin.sampledata data/sample_zh.jsonl` regenerates the committed file. The same text
trains the embedded tiny model's tokenizer, so the quickstart covers every character it sees.
Everything here was written for DoctorKit; it is illustrative, not medical advice.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

# condition: (patient symptom phrases, doctor explanation, doctor advice, follow-up question, follow-up answer)
CONDITIONS = {
    "感冒": (["鼻塞流涕", "嗓子有点疼", "打喷嚏还低烧"],
            "这多半是普通感冒，由病毒引起，一般一周左右自己会好。",
            "注意多喝温水、好好休息，发烧超过三十八度五可以吃对乙酰氨基酚退热。",
            "需要吃抗生素吗？", "普通感冒是病毒感染，抗生素没有用，除非医生确认合并了细菌感染。"),
    "高血压": (["头晕头胀", "量血压一百五十多", "后脑勺发紧"],
             "血压多次超过一百四十/九十就要考虑高血压。",
             "建议少吃盐、规律运动、戒烟限酒，并在家每天早晚测量血压做记录，门诊复查后决定是否用药。",
             "降压药吃上了是不是就不能停？", "多数人需要长期服药，不要自行停药，调整剂量要听医生的。"),
    "糖尿病": (["口渴多尿", "空腹血糖七点八", "最近体重下降"],
             "口渴、多尿加上空腹血糖偏高，需要警惕糖尿病。",
             "建议去医院查糖化血红蛋白和口服葡萄糖耐量试验，同时控制主食、增加运动。",
             "水果还能吃吗？", "可以适量吃低糖水果，放在两餐之间，并注意监测血糖。"),
    "胃炎": (["胃胀反酸", "吃完饭上腹隐痛", "经常打嗝"],
            "这些表现比较像慢性胃炎或功能性消化不良。",
            "建议三餐规律，少吃辛辣油腻，戒酒，症状持续可以做胃镜和幽门螺杆菌检查。",
            "幽门螺杆菌会传染吗？", "会通过共餐传播，建议分餐或使用公筷，阳性的话要规范根除治疗。"),
    "失眠": (["晚上睡不着", "凌晨三点就醒", "白天没精神"],
            "长期入睡困难或早醒属于失眠，常和压力、作息有关。",
            "建议固定起床时间，睡前一小时不看手机，下午以后不喝咖啡和浓茶。",
            "可以吃安眠药吗？", "短期可以在医生指导下使用，不建议自行长期服用。"),
    "腰痛": (["久坐后腰疼", "弯腰时腰部酸痛", "腰疼向腿放射"],
            "久坐引起的腰痛多为腰肌劳损，如果向腿放射要排查腰椎间盘突出。",
            "建议避免久坐，每小时起身活动，睡硬一点的床，疼痛明显可以局部热敷。",
            "需要拍片子吗？", "如果腿麻无力或疼痛超过六周，建议做腰椎核磁共振检查。"),
    "过敏性鼻炎": (["一到春天就打喷嚏", "鼻子痒流清水鼻涕", "早上起床鼻塞"],
               "季节性发作、鼻痒和清涕，符合过敏性鼻炎的表现。",
               "建议尽量避开花粉和尘螨，可以在医生指导下使用鼻用激素喷剂和抗组胺药。",
               "这个病能根治吗？", "目前难以根治，但规范治疗和脱敏治疗可以明显控制症状。"),
    "湿疹": (["手上起红疹很痒", "皮肤干燥脱皮", "抓破后渗水"],
            "反复瘙痒、干燥和渗出，比较像湿疹。",
            "建议每天多次涂保湿霜，避免热水烫洗，急性期可以短期外用弱效激素药膏。",
            "激素药膏安全吗？", "在医生指导下短期、适量使用是安全的，不要长期大面积涂。"),
    "偏头痛": (["一侧头痛跳着疼", "头痛时怕光怕声", "头痛伴恶心"],
             "单侧搏动性头痛并伴有恶心、畏光，考虑偏头痛。",
             "发作时在安静昏暗的房间休息，可以服用布洛芬，记录头痛日记找出诱因。",
             "什么时候要马上去医院？", "如果是突然出现的剧烈头痛或伴有肢体无力、说话不清，要立即就医。"),
    "咳嗽": (["干咳两周了", "嗓子痒一直咳", "晚上咳得厉害"],
            "感冒后咳嗽可以持续几周，称为感染后咳嗽。",
            "建议多喝水、保持室内湿润，避免烟雾刺激；咳嗽超过八周需要进一步检查。",
            "要不要拍胸片？", "如果伴有发热、咳血或胸痛，建议尽快拍胸片。"),
    "腹泻": (["一天拉了五次稀", "肚子咕噜响还拉肚子", "吃了凉的就腹泻"],
            "急性腹泻多与饮食不洁或病毒感染有关。",
            "注意补充口服补液盐防止脱水，饮食清淡，如有高热或便血要及时就医。",
            "可以吃止泻药吗？", "轻症可以用蒙脱石散，发热或便血时不要自行止泻。"),
    "贫血": (["经常头晕乏力", "脸色苍白", "爬楼梯就心慌"],
            "乏力、面色苍白和活动后心慌，要考虑贫血。",
            "建议查血常规和铁蛋白，缺铁的话多吃瘦肉、动物肝脏，并按医嘱补铁。",
            "补铁要补多久？", "血红蛋白正常后一般还要再补三个月，把储存铁补足。"),
    "痛风": (["大脚趾关节红肿", "半夜脚痛醒", "尿酸五百多"],
            "大脚趾关节突然红肿剧痛加上尿酸高，考虑痛风发作。",
            "急性期要休息、抬高患肢，多喝水，少吃海鲜、动物内脏，少喝啤酒。",
            "痛风不疼了还要吃药吗？", "反复发作的患者需要长期降尿酸治疗，目标尿酸低于三百六。"),
    "甲状腺结节": (["体检发现甲状腺结节", "脖子上摸到一个包", "B超说结节三类"],
               "大多数甲状腺结节是良性的，三类通常良性可能性大。",
               "建议六到十二个月复查一次B超，同时查甲状腺功能。",
               "需要做手术吗？", "良性且没有压迫症状一般不用手术，定期随访即可。"),
    "颈椎病": (["脖子酸痛", "低头久了手麻", "转头时颈部僵硬"],
             "长期低头工作容易引起颈椎病，手麻提示可能压迫神经。",
             "建议调整电脑高度，每小时活动颈部，枕头不要太高。",
             "按摩有用吗？", "轻柔的理疗可以缓解，但不要暴力扳颈，手麻明显要先就医检查。"),
    "口腔溃疡": (["嘴里长了溃疡", "舌头边上一个白点很疼", "溃疡反复长"],
              "反复口腔溃疡常和劳累、睡眠不足、维生素缺乏有关。",
              "建议清淡饮食、规律作息，可以用溃疡贴或含漱液，超过两周不愈合要就诊。",
              "要补维生素吗？", "可以适当补充B族维生素，饮食中多吃蔬菜水果。"),
}

OPENERS = ["医生您好，", "大夫，", "你好，", "请问，", "医生，"]
DURATIONS = ["这两天", "最近一周", "一个多月了", "从昨天开始", "断断续续半年"]
WHO = ["我", "我妈妈", "我爸", "我家孩子", "我老公"]
ASKS = ["这是怎么回事？", "该怎么办？", "要紧吗？", "需要去医院吗？", "平时要注意什么？"]
CLOSERS = ["祝您早日康复。", "如有不适请及时就医。", "有问题可以随时复诊。"]
SYSTEM_PROMPTS = ["你是一名耐心、专业的全科医生，用通俗的中文回答患者的问题。", None, None]


def make_conversation(rng: random.Random, name: str) -> dict:
    symptoms, explain, advice, follow_q, follow_a = CONDITIONS[name]
    symptom = rng.choice(symptoms)
    question = f"{rng.choice(OPENERS)}{rng.choice(WHO)}{rng.choice(DURATIONS)}{symptom}，{rng.choice(ASKS)}"
    messages = []
    system = rng.choice(SYSTEM_PROMPTS)
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": question})
    messages.append({"role": "assistant", "content": f"{explain}{advice}{rng.choice(CLOSERS)}"})
    if rng.random() < 0.4:  # about four in ten continue with a follow-up turn
        messages.append({"role": "user", "content": follow_q})
        messages.append({"role": "assistant", "content": follow_a})
    return {"messages": messages, "topic": name}


def generate(n: int = 300, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    names = sorted(CONDITIONS)
    return [dict(id=f"sample-{i:04d}", **make_conversation(rng, names[i % len(names)])) for i in range(n)]


def corpus_text() -> str:
    """Every string the sample can contain: the tiny tokenizer is trained on it."""
    parts = OPENERS + DURATIONS + WHO + ASKS + CLOSERS + [s for s in SYSTEM_PROMPTS if s]
    for name, (symptoms, *rest) in CONDITIONS.items():
        parts += [name, *symptoms, *rest]
    return "\n".join(parts)


def write_jsonl(rows: list[dict], argv: list[str] | None, default: str, what: str) -> int:
    """Write generated sample rows to argv[0] (or the default path), one JSON object a line."""
    out = Path((argv or sys.argv[1:] or [default])[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} {what} to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return write_jsonl(generate(), argv, "data/sample_zh.jsonl", "conversations")


if __name__ == "__main__":
    raise SystemExit(main())
