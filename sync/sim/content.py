"""Plausible field values for simulated records: Chinese file names, staff, sizes, file urls.

Everything draws from a ``random.Random`` handed in by the caller, so the dataset stays a pure
function of its seed.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from dataclasses import dataclass
from random import Random

FILE_HOST = "https://files.example.invalid"
_TOKEN_CHARS = string.ascii_letters + string.digits

# (type, weight, smallest and largest size in bytes, name templates). ``{n}`` is a small number,
# ``{ym}`` a year-month: the shapes sales people really give their uploads.
_FILE_KINDS: tuple[tuple[str, int, int, int, tuple[str, ...]], ...] = (
    (
        "pdf",
        30,
        20_000,
        8_000_000,
        ("合同扫描件_{ym}", "发票_{n}", "产品手册", "资质证书", "方案书v{n}"),
    ),
    (
        "docx",
        15,
        8_000,
        2_000_000,
        ("需求说明书", "会议纪要_{ym}", "合作协议草案v{n}", "客户反馈汇总"),
    ),
    ("xlsx", 15, 6_000, 1_500_000, ("报价单v{n}", "订单明细_{ym}", "回款计划", "库存清单_{n}")),
    ("jpg", 12, 40_000, 6_000_000, ("现场照片_{n}", "营业执照", "名片", "签收单_{ym}")),
    ("png", 10, 500, 3_000_000, ("聊天截图{n}", "付款凭证", "二维码", "logo")),
    ("rar", 6, 100_000, 80_000_000, ("资料包", "投标文件_{ym}", "0.0.{n}-SNAPSHOT")),
    ("mp4", 5, 2_000_000, 300_000_000, ("演示视频", "培训录像_{n}", "产品演示_{ym}")),
    ("pptx", 7, 300_000, 40_000_000, ("产品介绍", "季度汇报_{ym}", "解决方案v{n}")),
)
_KIND_WEIGHTS = [kind[1] for kind in _FILE_KINDS]

_NOTES = (
    "客户要求修改报价，已发送新版",
    "已签回合同，等待财务确认回款",
    "上门拜访，客户对产品很感兴趣",
    "电话沟通需求，下周安排演示",
    "客户反馈价格偏高，申请折扣中",
    "发送产品资料，客户说会转给老板看",
    "售后问题已处理，客户满意",
    "Follow-up: 客户 asked for the English version 📎",
)

_SURNAMES = (
    "王",
    "李",
    "张",
    "刘",
    "陈",
    "杨",
    "黄",
    "赵",
    "吴",
    "周",
    "徐",
    "孙",
    "马",
    "朱",
    "胡",
)
_SURNAME_PINYIN = (
    "wang",
    "li",
    "zhang",
    "liu",
    "chen",
    "yang",
    "huang",
    "zhao",
    "wu",
    "zhou",
    "xu",
    "sun",
    "ma",
    "zhu",
    "hu",
)
_GIVEN = (
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "洋",
    "艳",
    "勇",
    "军",
    "杰",
    "娟",
    "涛",
    "明",
)
_GIVEN_PINYIN = (
    "wei",
    "fang",
    "na",
    "min",
    "jing",
    "li",
    "qiang",
    "lei",
    "yang",
    "yan",
    "yong",
    "jun",
    "jie",
    "juan",
    "tao",
    "ming",
)


@dataclass(frozen=True, slots=True)
class Staff:
    """A sales person or operator: Tanmarket id, WeCom userId, display name."""

    staff_id: int
    user_id: str
    name: str


def staff_name(rng: Random, number: int) -> tuple[str, str]:
    """A Chinese display name and a WeCom-style userId (pinyin plus a number to stay unique)."""
    s = rng.randrange(len(_SURNAMES))
    g = rng.randrange(len(_GIVEN))
    return _SURNAMES[s] + _GIVEN[g], f"{_SURNAME_PINYIN[s]}{_GIVEN_PINYIN[g]}{number:02d}"


def token(rng: Random, length: int) -> str:
    return "".join(rng.choices(_TOKEN_CHARS, k=length))


def human_size(size: int) -> str:
    """Size text as the API shows it: ``812B``, ``29.9KB``, ``1.2MB``."""
    if size < 1024:
        return f"{size}B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f}KB"
    if size < 1024 * 1024 * 1024:
        return f"{size / 1024 / 1024:.1f}MB"
    return f"{size / 1024 / 1024 / 1024:.1f}GB"


def file_fields(
    rng: Random, year_month: str, place: Callable[[str, int], tuple[str, int]] | None = None
) -> tuple[str, str]:
    """``(fileName, fileContent)`` for one upload; ``fileContent`` is JSON text, as sent.

    ``place(store_path, size)`` gives the URL and size to record instead of the default host
    and the drawn size (the simulator's served files); the draws are the same either way."""
    kind, _, smallest, largest, templates = rng.choices(_FILE_KINDS, _KIND_WEIGHTS)[0]
    stem = rng.choice(templates).format(n=rng.randint(1, 12), ym=year_month)
    name = f"{stem}.{kind}"
    # Sizes are spread over orders of magnitude, so draw the exponent rather than the size.
    size = round(smallest * (largest / smallest) ** rng.random())
    store_path = (
        f"group1/M00/{rng.randrange(256):02X}/{rng.randrange(256):02X}/{token(rng, 22)}.{kind}"
    )
    url = f"{FILE_HOST}/{store_path}"
    if place is not None:
        url, size = place(store_path, size)
    content = {
        "name": name,
        "url": url,
        "size": human_size(size),
        "type": kind,
        "fileId": store_path,
    }
    # The vendor's sample shows fileName sometimes without its extension.
    file_name = stem if rng.random() < 0.2 else name
    return file_name, json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def follow_note(rng: Random) -> str | None:
    """The follow-up note a file belongs to; most files have none."""
    return rng.choice(_NOTES) if rng.random() < 0.4 else None


def revised_name(file_name: str, generation: int) -> str:
    stem, dot, ext = file_name.rpartition(".")
    if not dot:
        return f"{file_name}_修订{generation}"
    return f"{stem}_修订{generation}.{ext}"


_NICK_DECOR = ("", "🌸", "✨", "🍀", "(๑•̀ㅂ•́)و", "·Sunny", "_上海", "🐱", "小")


def customer_nickname(rng: Random) -> str:
    """A WeChat nickname: Chinese, emoji, kaomoji, mixed scripts, as people pick them."""
    s = rng.randrange(len(_SURNAMES))
    g = rng.randrange(len(_GIVEN))
    return rng.choice(_NICK_DECOR) + _SURNAMES[s] + _GIVEN[g] + rng.choice(_NICK_DECOR)
