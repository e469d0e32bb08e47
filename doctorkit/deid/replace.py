"""What an identifier becomes: a numbered tag (【姓名1】) or a fake value of the same shape (surrogate).

One `RecordScope` per record: the same value always gets the same tag number or the same fake, and all
dates of the record move by one random offset, so "admitted 3月1日, discharged 3月8日" keeps its week.
"""
from __future__ import annotations

import datetime as dt
import random
import re
import string

from doctorkit.deid.patterns import MONTHS, id_check_digit, luhn_ok

LABELS = {"NAME": "姓名", "ID": "身份证号", "PHONE": "电话", "EMAIL": "邮箱", "ADDRESS": "地址", "RECORD": "病历号",
          "INSURANCE": "医保卡号", "BANK": "银行卡号", "PLATE": "车牌", "URL": "网址", "IP": "IP地址", "DATE": "日期",
          "AGE": "年龄"}
STYLES = ("tag", "surrogate")
MAX_SHIFT_DAYS = 365

FAKE_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
FAKE_GIVEN = "子涵雨轩浩然梓萱一诺欣怡思远嘉怡俊熙晨阳佳琪宇航若曦明哲书瑶"
FAKE_EN_FIRST = ["Alex", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery"]
FAKE_EN_LAST = ["Smith", "Miller", "Brown", "Wilson", "Moore", "Clark", "Young", "Hill"]
FAKE_CITIES = [("江南", "东城"), ("临海", "新华"), ("安平", "城西"), ("青川", "北湖"), ("云台", "南山")]
FAKE_ROADS = ["和平", "建设", "人民", "解放", "幸福", "光明", "朝阳"]
FAKE_ID_REGIONS = ["110101", "310104", "440106", "320102", "510107", "420106", "330106"]
MONTH_NAMES = MONTHS.split("|")


class RecordScope:
    """Replacements for one record: stable numbering / fakes, one date offset."""

    def __init__(self, style: str, seed: int, key: str):
        self.style = style
        self.rng = random.Random(f"{seed}\x00{key}")
        self.shift = self.rng.choice([d for d in range(-MAX_SHIFT_DAYS, MAX_SHIFT_DAYS + 1) if d])
        self.seen: dict[tuple[str, str], str] = {}
        self.numbers: dict[str, int] = {}

    def replace(self, kind: str, value: str) -> str:
        key = (kind, normalize(kind, value))
        if key not in self.seen:
            if self.style == "tag":
                self.numbers[kind] = self.numbers.get(kind, 0) + 1
                self.seen[key] = f"【{LABELS[kind]}{self.numbers[kind]}】"
            else:
                fake = SURROGATES[kind](self, value)
                for _ in range(20):   # a fake equal to the original (a short name, an unlucky draw) hides nothing
                    if normalize(kind, fake) != key[1]:
                        break
                    fake = SURROGATES[kind](self, value)
                self.seen[key] = fake
        return self.seen[key]


def normalize(kind: str, value: str) -> str:
    """The same identifier written two ways ("138 0013 8000" / "13800138000") is one identifier."""
    if kind in ("NAME", "ADDRESS", "URL", "EMAIL"):
        return value.strip().lower()
    return re.sub(r"[\s\-()（）·]", "", value).upper()


# -------------------------------------------------------------- surrogates ---

def _scramble(rng: random.Random, value: str, keep: int = 0) -> str:
    """Same shape: digits -> random digits, letters -> random letters (case kept), the rest as is."""
    out, seen_alnum = [], 0
    for ch in value:
        if ch.isascii() and ch.isalnum():
            seen_alnum += 1
            if seen_alnum <= keep:
                out.append(ch)
            elif ch.isdigit():
                out.append(rng.choice(string.digits))
            else:
                out.append(rng.choice(string.ascii_uppercase if ch.isupper() else string.ascii_lowercase))
        else:
            out.append(ch)
    return "".join(out)


def _name(scope: RecordScope, value: str) -> str:
    rng = scope.rng
    if value.isascii():
        words = value.split()
        return " ".join([rng.choice(FAKE_EN_FIRST)] * (len(words) > 1) + [rng.choice(FAKE_EN_LAST)])
    return rng.choice(FAKE_SURNAMES) + "".join(rng.choice(FAKE_GIVEN) for _ in range(len(value) - 1))


def _id(scope: RecordScope, value: str) -> str:
    rng = scope.rng
    born = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(365 * 65))
    if len(re.sub(r"\D", "", value)) == 15:
        return rng.choice(FAKE_ID_REGIONS) + born.strftime("%y%m%d") + f"{rng.randrange(1000):03d}"
    first17 = rng.choice(FAKE_ID_REGIONS) + born.strftime("%Y%m%d") + f"{rng.randrange(1000):03d}"
    return first17 + id_check_digit(first17)


def _bank(scope: RecordScope, value: str) -> str:
    while True:   # one in ten random numbers passes Luhn
        fake = _scramble(scope.rng, value, keep=1)
        if luhn_ok(re.sub(r"\D", "", fake)):
            return fake


def _plate(scope: RecordScope, value: str) -> str:
    rng = scope.rng
    tail = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(5))
    return rng.choice("京沪粤苏浙川鄂") + rng.choice("ABCDEFG") + tail


def _address(scope: RecordScope, value: str) -> str:
    rng = scope.rng
    if value.isascii():
        return f"{rng.randrange(10, 999)} {rng.choice(FAKE_EN_LAST)} Street"
    city, district = rng.choice(FAKE_CITIES)
    return f"{city}市{district}区{rng.choice(FAKE_ROADS)}路{rng.randrange(1, 300)}号"


def _age(scope: RecordScope, value: str) -> str:
    # HIPAA's "90 or older" bucket, written as "over 89" so an age of exactly 90 is not left in the text
    return "89岁以上" if "岁" in value else "over 89"


def _date(scope: RecordScope, value: str) -> str:
    """The date moved by the record's offset, written the way it was written; unparsable -> same shape."""
    numbers = [int(n) for n in re.findall(r"\d+", value)]
    month_name = next((i + 1 for i, m in enumerate(MONTH_NAMES) if value.lower().startswith(m[:3].lower())
                       or f" {m[:3].lower()}" in value.lower()), None)
    try:
        if month_name is not None:        # "March 5, 2023" / "5 March 2023"
            day, year, month = numbers[0], numbers[1], month_name
        elif "年" in value or "月" in value:
            year, month, day = numbers if len(numbers) == 3 else [2001, *numbers]
            year = year + (1900 if 30 <= year < 100 else 2000 if year < 30 else 0)
        elif len(numbers) == 1:           # a birth year alone
            return str(numbers[0] + (round(scope.shift / 365) or (1 if scope.shift > 0 else -1)))
        elif numbers[0] > 31:             # 2023-03-05
            year, month, day = numbers
        elif "." in value or numbers[0] > 12:   # 05.03.2023, 25/03/2023: day first
            day, month, year = numbers
        else:                             # 03/05/2023: month first
            month, day, year = numbers
        moved = dt.date(year, month, day) + dt.timedelta(days=scope.shift)
    except (ValueError, IndexError, OverflowError):
        return _scramble(scope.rng, value)
    if month_name is not None:
        return f"{MONTH_NAMES[moved.month - 1]} {moved.day}, {moved.year}"
    parts = {"year": moved.year, "month": moved.month, "day": moved.day}
    if "年" not in value and "月" in value:
        order = ["month", "day"]
    elif "年" in value or numbers[0] > 31:
        order = ["year", "month", "day"]
    elif "." in value or numbers[0] > 12:
        order = ["day", "month", "year"]
    else:
        order = ["month", "day", "year"]
    pieces = iter(order)
    return re.sub(r"\d+", lambda m: str(parts[next(pieces)]).zfill(len(m.group()) if m.group()[0] == "0" else 1), value)


SURROGATES = {
    "NAME": _name, "ID": _id, "BANK": _bank, "PLATE": _plate, "ADDRESS": _address, "AGE": _age, "DATE": _date,
    "PHONE": lambda scope, value: _scramble(scope.rng, value, keep=3),
    "RECORD": lambda scope, value: _scramble(scope.rng, value),
    "INSURANCE": lambda scope, value: _scramble(scope.rng, value),
    "EMAIL": lambda scope, value: f"user{scope.rng.randrange(10000):04d}@example.com",
    "URL": lambda scope, value: f"https://example.com/p{scope.rng.randrange(1000)}",
    "IP": lambda scope, value: f"192.0.2.{scope.rng.randrange(1, 255)}",   # TEST-NET-1, never routed
}
