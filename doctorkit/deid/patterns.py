"""Identifiers with a fixed shape: ID numbers, phones, e-mails, record / insurance / bank numbers, plates,
URLs, IPs, dates, ages over 89, addresses. Each detector yields Span(start, end, type, priority).

Why rules and not a library: see doctorkit/deid/__init__.py (what we tried on the package index).
Numbers are checked where a checksum exists (ID check digit, Luhn), so a lab value or a dose never
passes for an identifier; a label ("住院号：", "医保卡号") makes any run of digits and letters after it one.
"""
from __future__ import annotations

import re
from typing import Iterator, NamedTuple


class Span(NamedTuple):
    start: int
    end: int
    type: str
    priority: int   # on overlap the higher priority wins, then the longer span


SEP = r"[ \u00a0\-]?"        # people write numbers with a space or a dash between groups
_NOT_ALNUM_BEFORE = r"(?<![0-9A-Za-z])"
_NOT_ALNUM_AFTER = r"(?![0-9A-Za-z])"

# ------------------------------------------------------------ ID numbers ---

ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """GB 11643-1999 check character of an 18-digit resident ID."""
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS)) % 11]


ID18 = re.compile(_NOT_ALNUM_BEFORE + r"([1-9]\d{5})" + SEP + r"((?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))"
                  + SEP + r"(\d{3}[\dXx])" + _NOT_ALNUM_AFTER)
ID15 = re.compile(_NOT_ALNUM_BEFORE + r"[1-9]\d{5}\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}" + _NOT_ALNUM_AFTER)


def find_ids(text: str) -> Iterator[Span]:
    for m in ID18.finditer(text):
        digits = "".join(m.groups())
        if id_check_digit(digits[:17]) == digits[17].upper():
            yield Span(m.start(), m.end(), "ID", 60)
    for m in ID15.finditer(text):
        yield Span(m.start(), m.end(), "ID", 55)


# ---------------------------------------------------------------- phones ---

MOBILE = re.compile(_NOT_ALNUM_BEFORE + r"(?:(?:\+|00)?86" + SEP + r")?1[3-9]\d" + SEP + r"\d{4}" + SEP + r"\d{4}"
                    + _NOT_ALNUM_AFTER)
# landline: an area code (0 + 2-3 digits, optionally in brackets) then 7-8 digits; bare 7-8 digits are
# too often something else and are caught only after a label (LABELLED below)
LANDLINE = re.compile(_NOT_ALNUM_BEFORE + r"(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3}[ \-])" + r"\s?\d{3,4}" + SEP + r"\d{4}"
                      + r"(?:\s?(?:转|ext\.?|x)\s?\d{1,5})?" + _NOT_ALNUM_AFTER)
EN_PHONE = re.compile(_NOT_ALNUM_BEFORE + r"(?:\+1[ \-.]?)?\(?\d{3}\)?[ \-.]\d{3}[ \-.]\d{4}" + _NOT_ALNUM_AFTER)

# --------------------------------------------------------- e-mail, web ---

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
URL = re.compile(r"(?:https?://|www\.)[^\s，。；、！？）)\]}<>\"'“”]+", re.I)
IP = re.compile(_NOT_ALNUM_BEFORE + r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                + r"(?![0-9A-Za-z.])")

# ------------------------------------------------------ cards, plates ---

BANK = re.compile(_NOT_ALNUM_BEFORE + r"(?:\d{4}[ \-]?){3,4}\d{1,4}" + _NOT_ALNUM_AFTER)
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE = re.compile(f"[{PROVINCES}][A-HJ-NP-Z][·・ ]?(?:[A-HJ-NP-Z0-9]{{5}}[A-HJ-NP-Z0-9挂学警港澳]?)" + _NOT_ALNUM_AFTER)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def find_bank_cards(text: str) -> Iterator[Span]:
    for m in BANK.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 16 <= len(digits) <= 19 and luhn_ok(digits):
            yield Span(m.start(), m.end(), "BANK", 50)


# ------------------------------------------------------ labelled values ---

# a value: optional letters, then digit groups (letters allowed) split by single spaces or dashes
_VALUE = r"[:：]?\s*(?:是|为)?[:：]?\s*([A-Za-z]{0,4}[ \-]?\d[\dA-Za-z]*(?:[ \-][\dA-Za-z]*\d[\dA-Za-z]*)*)"
LABELLED = [  # (type, label regex); the value after the label is the identifier
    ("INSURANCE", r"(?:医保|社保|医疗保险|农合|新农合)(?:卡|卡号|号|号码|编号|账号|个人编号)+"),
    ("RECORD", r"(?:住院|病案|门诊|病历|就诊卡|就诊|检查|化验|影像|挂号|床位|患者|病人|登记)(?:号|号码|编号|ID|卡号)"
               r"|(?:MRN|Medical record (?:number|no\.?)|Patient ID|Admission (?:number|no\.?)|Record (?:number|no\.?))"),
    ("ID", r"(?:身份证|证件|护照)(?:号码|号)?|(?:ID|SSN) ?(?:number|no\.?)"),
    ("BANK", r"(?:银行卡|信用卡|卡号|账号|银行账户)(?:号码|号)?"),
    ("PHONE", r"(?:电话|手机|座机|联系方式|联系电话|手机号|Tel|Phone|Mobile)(?:号码|号)?"),
]
LABELLED_RE = [(kind, re.compile(f"(?:{label}){_VALUE}", re.I)) for kind, label in LABELLED]


def find_labelled(text: str) -> Iterator[Span]:
    for kind, pattern in LABELLED_RE:
        for m in pattern.finditer(text):
            value = m.group(1).rstrip(" -")
            if len(value) >= 4:
                yield Span(m.start(1), m.start(1) + len(value), kind, 70)


# ------------------------------------------------------------------ dates ---

ZH_DATE = re.compile(r"(?<!\d)(?:(?:19|20)\d{2}|\d{2})\s?年\s?(?:1[0-2]|0?[1-9])\s?月\s?(?:3[01]|[12]\d|0?[1-9])\s?[日号]?"
                     r"|(?<![\d年])(?:1[0-2]|0?[1-9])月(?:3[01]|[12]\d|0?[1-9])[日号]")
NUM_DATE = re.compile(_NOT_ALNUM_BEFORE + r"(?:(?:19|20)\d{2}[\-/.](?:1[0-2]|0?[1-9])[\-/.](?:3[01]|[12]\d|0?[1-9])"
                      r"|(?:3[01]|[12]\d|0?[1-9])[/.](?:1[0-2]|0?[1-9])[/.](?:19|20)\d{2}"
                      r"|(?:1[0-2]|0?[1-9])/(?:3[01]|[12]\d|0?[1-9])/(?:19|20)\d{2})" + r"(?![0-9A-Za-z.])")
MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
MONTH_ABBR = "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
EN_DATE = re.compile(rf"\b(?:(?:{MONTHS}|{MONTH_ABBR})\.? \d{{1,2}}(?:st|nd|rd|th)?,? (?:19|20)\d{{2}}"
                     rf"|\d{{1,2}}(?:st|nd|rd|th)? (?:{MONTHS}|{MONTH_ABBR})\.?,? (?:19|20)\d{{2}})\b")
BIRTH_YEAR = re.compile(r"(?:出生于|生于|出生年份[:：]?|born in )\s?((?:19|20)\d{2})\s?年?", re.I)

# ------------------------------------------------------------------- ages ---

AGE = re.compile(r"(?<!\d)(?:9\d|1[0-2]\d)\s?(?:周岁|岁)(?!以下)|(?<!\d)(?:9\d|1[0-2]\d)[ \-](?:year|yr)s?[ \-]old\b"
                 r"|\b(?:aged?|age:) ?(?:9\d|1[0-2]\d)\b|(?:年龄|年纪)[:：]?\s?(?:9\d|1[0-2]\d)(?!\d)", re.I)
AGE_ZH_WORDS = re.compile(r"(?:九十|一百)[一二三四五六七八九]?岁")

# -------------------------------------------------------------- addresses ---

_HAN = "\u4e00-\u9fff"
_NUM = r"(?:\d+|[一二三四五六七八九十百零〇两]+)"
ADMIN = rf"[{_HAN}]{{2,7}}?(?:省|自治区|特别行政区|市|自治州|地区|盟|(?<![社小园校景病])区|县|旗|镇|乡|街道)"
STREET = rf"(?:[{_HAN}0-9]{{1,8}}?(?:大道|大街|路|街|巷|弄|胡同|小区|花园|公寓|大厦|新村|村|里)(?:{_NUM}[段巷弄号])?)"
DOOR = rf"(?:(?:{_NUM}|[A-Za-z])(?:号楼|号院|号|栋|幢|座|单元|楼|层|室|户|组)|[\-－]{_NUM})+"
ADDRESS = re.compile(rf"(?:{ADMIN})*{STREET}+(?:{DOOR})?|(?:{ADMIN})+(?:{DOOR})")
ADDRESS_LABEL = re.compile(r"(?:住址|地址|家庭住址|现住址|户籍地址|住在|家住|居住地)[:：]?\s*([^\s，,。；;！!？?\n]{4,40})")
# words that a greedy administrative-area match swallows in front of an address ("我家住在北京市…")
ADDRESS_LEAD = re.compile(r"^(?:我家|他家|她家|家里|我们|我|他|她|您|你|家|住在|家住|住址|地址|是|在|到|去|来自|现住|居住在|住|于|的)+")
EN_ADDRESS = re.compile(r"\b\d{1,5} (?:[A-Z][a-z]+ ){1,3}(?:Street|St\.|Road|Rd\.|Avenue|Ave\.|Lane|Ln\.|Drive|Dr\.|"
                        r"Boulevard|Blvd\.|Way|Court|Ct\.)(?:,? (?:Apt\.?|Suite|Unit) ?\w+)?")


ADDRESS_HINT = re.compile("[省市区县旗镇乡路街巷弄同村里区园寓厦号栋幢室]")   # the address regex backtracks: skip texts with none


def find_addresses(text: str) -> Iterator[Span]:
    for m in (ADDRESS.finditer(text) if ADDRESS_HINT.search(text) else ()):
        body = m.group()
        has_street = re.search(rf"{STREET}", body) is not None
        has_door = re.search(DOOR, body) is not None
        has_admin = re.search(ADMIN, body) is not None
        if not ((has_street and (has_door or has_admin)) or (has_admin and has_door)):
            continue   # "尿路" or "农村" alone is no address
        lead = ADDRESS_LEAD.match(body)
        start = m.start() + (lead.end() if lead else 0)
        if m.end() - start >= 4:
            yield Span(start, m.end(), "ADDRESS", 30)
    for m in ADDRESS_LABEL.finditer(text):   # below every other type: "服务器地址 10.0.0.1" is an IP
        if re.search(f"[{_HAN}]", m.group(1)):
            yield Span(m.start(1), m.end(1), "ADDRESS", 32)
    for m in EN_ADDRESS.finditer(text):
        yield Span(m.start(), m.end(), "ADDRESS", 30)


def _simple(pattern: re.Pattern, kind: str, priority: int, group: int = 0):
    def find(text: str) -> Iterator[Span]:
        for m in pattern.finditer(text):
            yield Span(m.start(group), m.end(group), kind, priority)
    return find


# Detectors of fixed-shape identifiers, in no particular order: overlaps are settled by priority.
DETECTORS = [
    find_ids, find_bank_cards, find_labelled, find_addresses,
    _simple(MOBILE, "PHONE", 58), _simple(LANDLINE, "PHONE", 45), _simple(EN_PHONE, "PHONE", 40),
    _simple(EMAIL, "EMAIL", 80), _simple(URL, "URL", 75), _simple(IP, "IP", 45), _simple(PLATE, "PLATE", 40),
    _simple(ZH_DATE, "DATE", 35), _simple(NUM_DATE, "DATE", 35), _simple(EN_DATE, "DATE", 35),
    _simple(BIRTH_YEAR, "DATE", 35, group=1),
    _simple(AGE, "AGE", 35), _simple(AGE_ZH_WORDS, "AGE", 35),
]


def find_patterns(text: str) -> list[Span]:
    return [span for detect in DETECTORS for span in detect(text)]
