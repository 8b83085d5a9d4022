"""Known-bad Chinese text, built from real text the way it goes bad in crawls and dumps.

Used by bench/bench_clean_zh.py (full data) and tests/test_clean_zh.py (tests/data samples). Every
builder takes real texts and a seeded `random.Random`, so a set is the same for the same seed.
The ground truth is how each item was built, never what corpuskit says about it; each kind lists
the rule families whose names say why an item of that kind is bad.
"""

from __future__ import annotations

import random

# ---- site chrome, as Chinese portals and forums print it ---------------------------------------

MENU = ("首页", "新闻", "国内", "国际", "社会", "体育", "娱乐", "财经", "股票", "科技", "手机", "汽车", "房产",
        "教育", "旅游", "健康", "时尚", "视频", "图片", "论坛", "博客", "专题", "评论", "军事", "历史", "文化",
        "游戏", "读书", "女性", "育儿", "彩票", "天气", "招聘", "更多")
SITES = ("新华网", "中国新闻网", "东方财富网", "太平洋电脑网", "天涯社区", "红网", "大众网", "北青网", "光明网")
SEPARATORS = (" | ", "｜", " · ", " / ", "  ", " > ")
FOOTERS = (
    "Copyright © {y1}-{y2} {site} 版权所有 京ICP备{n}号",
    "{site}版权所有 未经书面授权禁止使用 ICP证{n}号",
    "关于我们 | 联系我们 | 广告服务 | 网站地图 | 免责声明 | 友情链接",
    "上一篇：{title}  下一篇：{title2}",
    "分享到：新浪微博 微信 QQ空间 豆瓣",
    "责任编辑：{name}  【打印】【关闭】",
    "扫一扫，关注我们的微信公众号",
    "当前位置：首页 > {m1} > {m2} > 正文",
    "用户登录 | 免费注册 | 忘记密码",
    "返回顶部  加入收藏  设为首页",
    "热门推荐  猜你喜欢  相关阅读",
    "京公网安备{n}号 增值电信业务经营许可证：京B2-{n}",
)
NAMES = ("王伟", "李娜", "张敏", "刘洋", "陈静", "杨帆", "赵磊", "黄丽")


def navigation(rng: random.Random, real: list[str]) -> str:
    """A page of chrome: menu bars, breadcrumbs, footers, and at most a sentence of content."""
    lines = []
    for _ in range(rng.randint(1, 3)):
        sep = rng.choice(SEPARATORS)
        lines.append(sep.join(rng.sample(MENU, rng.randint(5, 12))))
    for _ in range(rng.randint(1, 4)):
        lines.append(_footer(rng, real))
    if rng.random() < 0.4:  # a line of real text caught between the menus
        lines.insert(rng.randint(1, len(lines)), rng.choice(real)[:30])
    if rng.random() < 0.3:
        return lines[0] if rng.random() < 0.5 else _footer(rng, real)  # a lone menu or footer line
    return "\n".join(lines)


def _footer(rng: random.Random, real: list[str]) -> str:
    return rng.choice(FOOTERS).format(
        y1=rng.randint(1998, 2010), y2=rng.randint(2015, 2024), site=rng.choice(SITES),
        n=rng.randint(10_000_000, 99_999_999), title=rng.choice(real)[:14], title2=rng.choice(real)[:14],
        name=rng.choice(NAMES), m1=rng.choice(MENU), m2=rng.choice(MENU))


# ---- keyword stuffing: SEO pages that repeat a query with variations ---------------------------

CITIES = ("北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京", "西安", "重庆")
PATTERNS = ("{k}", "{c}{k}", "{k}哪家好", "{k}价格", "最好的{k}", "{k}公司", "{k}排名", "{k}电话", "正规{k}",
            "{c}{k}哪家便宜", "{k}多少钱", "专业{k}", "{k}推荐", "{k}官网", "{c}最好的{k}")
KEYWORDS = ("搬家公司", "减肥茶", "装修公司", "英语培训", "二手车", "婚纱摄影", "网站建设", "空调维修",
            "月嫂", "驾校", "代理记账", "开锁公司", "考研辅导", "祛斑", "律师事务所", "留学中介")


def keyword_stuffing(rng: random.Random, real: list[str]) -> str:
    k = rng.choice(KEYWORDS)
    n = rng.randint(8, 30)
    sep = rng.choice((" ", "，", "、", ",", " | ", "  "))
    stuffed = sep.join(rng.choice(PATTERNS).format(k=k, c=rng.choice(CITIES)) for _ in range(n))
    if rng.random() < 0.5:
        stuffed = f"{k}：" + stuffed
    if rng.random() < 0.3:  # a real sentence in front, as spam pages disguise themselves
        stuffed = rng.choice(real)[:40] + stuffed
    return stuffed


# ---- repeated lines: a page that is one line many times ----------------------------------------

def repeated_lines(rng: random.Random, real: list[str]) -> str:
    line = rng.choice(real)[: rng.randint(12, 60)]
    others = [rng.choice(real)[:40] for _ in range(rng.randint(0, 3))]
    lines = [line] * rng.randint(5, 30) + others
    rng.shuffle(lines)
    return "\n".join(lines)


# ---- random character soup ---------------------------------------------------------------------

def _gb2312_chars(rows: range) -> list[str]:
    out = []
    for r in rows:
        for c in range(0xA1, 0xFF):
            try:
                out.append(bytes([r, c]).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    return out


UNIFIED = [chr(c) for c in range(0x4E00, 0x9FA6)]
GB2312 = _gb2312_chars(range(0xB0, 0xF8))
PUNCT = "，。、；！？"


def char_soup(rng: random.Random, real: list[str]) -> str:
    """Characters drawn at random: from all of CJK Unified Ideographs, from GB2312, or with the
    frequencies of real Chinese text (so only their order is random); sometimes with punctuation."""
    n = rng.randint(20, 300)
    kind = rng.randrange(3)
    if kind == 0:
        chars = [rng.choice(UNIFIED) for _ in range(n)]
    elif kind == 1:
        chars = [rng.choice(GB2312) for _ in range(n)]
    else:
        pool = [c for t in rng.sample(real, min(50, len(real))) for c in t if "\u4e00" <= c <= "\u9fff"]
        chars = [rng.choice(pool) for _ in range(n)]
    if rng.random() < 0.5:
        for i in range(rng.randint(4, 12), n, rng.randint(6, 14)):
            chars[i] = rng.choice(PUNCT)
    return "".join(chars)


# ---- mojibake: UTF-8 read with the wrong codec -------------------------------------------------

def mojibake(rng: random.Random, real: list[str]) -> str:
    text = rng.choice([t for t in real if len(t) >= 20] or real)
    kind = rng.randrange(6)
    if kind == 0:
        bad = text.encode("utf-8").decode("gbk", errors="replace")      # 鍦ㄤ腑鍥
    elif kind == 1:
        bad = text.encode("utf-8").decode("big5", errors="replace")
    elif kind == 2:
        bad = text.encode("utf-8").decode("cp1252", errors="replace")   # ä¸­æ–‡
    elif kind == 3:
        bad = text.encode("utf-8").decode("latin-1")
    elif kind == 4:
        bad = text.encode("gbk", errors="replace").decode("utf-8", errors="replace")  # GBK file read as UTF-8
    else:
        bad = "锟斤拷" * rng.randint(1, 4) + text.encode("utf-8").decode("gbk", errors="replace")[: len(text) // 2]
    if rng.random() < 0.3:  # only part of the record went wrong
        keep = rng.choice(real)[:30]
        bad = keep + bad
    return bad


# ---- HTML and JavaScript left over from extraction ---------------------------------------------

JS = (
    'var _hmt = _hmt || [];(function() {var hm = document.createElement("script");'
    'hm.src = "https://hm.baidu.com/hm.js?{h}";var s = document.getElementsByTagName("script")[0];'
    's.parentNode.insertBefore(hm, s);})();',
    'document.write(\'<script src="/js/ad_{h}.js"></script>\');',
    '$(document).ready(function(){ $(".nav li").hover(function(){ $(this).addClass("on"); }); });',
    'window.onload = function() { var box = document.getElementById("content"); box.style.display = "block"; };',
    'if (window.screen.width < 768) { window.location.href = "http://m.example.cn/{h}.html"; }',
)


def html_js(rng: random.Random, real: list[str]) -> str:
    text = rng.choice(real)
    kind = rng.randrange(4)
    if kind == 0:  # a paragraph still in its tags, with entities and links
        parts = [text[i:i + rng.randint(10, 30)] for i in range(0, len(text), 25)] or [text]
        inner = "".join(f'<p class="txt">{p}&nbsp;&nbsp;</p>' if rng.random() < 0.6 else
                        f'<a href="/news/{rng.randint(1000, 9999)}.html" target="_blank">{p}</a><br/>' for p in parts)
        return f'<div class="article-content" id="c{rng.randint(1, 99)}">{inner}</div>'
    if kind == 1:  # a script block alone
        return rng.choice(JS).replace("{h}", f"{rng.getrandbits(64):016x}")
    if kind == 2:  # text followed by its page's scripts
        return text[:60] + "\n" + "\n".join(rng.choice(JS).replace("{h}", f"{rng.getrandbits(32):08x}")
                                            for _ in range(rng.randint(1, 3)))
    return (f'<table><tr><td>{text[:20]}</td><td>&yen;{rng.randint(10, 999)}</td></tr>'
            f'<tr><td colspan="2"><img src="/upload/{rng.randint(1, 99999)}.jpg" alt="{text[:6]}"/></td></tr></table>')


# kind -> (builder, rule families whose names say why)
KINDS = {
    "mojibake": (mojibake, ("encoding.",)),
    "boilerplate / navigation": (navigation, ("boilerplate.",)),
    "keyword stuffing": (keyword_stuffing, ("gopher_repetition.top_", "gopher_repetition.duplicated_")),
    "repeated-line page": (repeated_lines, ("gopher_repetition.dup_", "fineweb.char_dup_ratio")),
    "random character soup": (char_soup, ("gibberish.",)),
    "HTML / JS left-overs": (html_js, ("markup.",)),
}


def build(real: list[str], per_kind: int, seed: int) -> list[tuple[str, str]]:
    """(kind, text) pairs, `per_kind` of each kind, from real texts."""
    rng = random.Random(seed)
    return [(kind, fn(rng, real)) for kind, (fn, _) in KINDS.items() for _ in range(per_kind)]
