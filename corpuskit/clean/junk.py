"""Rules that look at a record's characters, so they judge records of any length or shape: text
read with the wrong codec, HTML/JS left over from extraction, navigation and boilerplate lines,
and random strings of Chinese characters. Each rule's name says what it found.

They exist because the Gopher/C4/FineWeb page rules are statistics over words and lines: they
cannot judge a one-line record, and they say "too short" or "top 2-gram" where the real cause is
mojibake or a menu bar. Thresholds and phrase lists are measured on real Chinese and English
text and on built junk (`bench/bench_clean_zh.py`, docs/benchmarks.md).
"""

from __future__ import annotations

import re

from corpuskit.clean.base import Filter, Verdict, reject
from corpuskit.clean.doc import Doc, display_len
from corpuskit.clean import zh_text

# ---- encoding -------------------------------------------------------------------------------

_SPACE = re.compile(r"\s")
# UTF-8 read as cp1252/Latin-1 always shows the lead byte of a multi-byte sequence (0xC2-0xF4) as
# one of Â..ô: without one, ftfy's (slower) check cannot find anything
_UTF8_LEAD_AS_LATIN1 = re.compile(r"[\u00c2-\u00f4]")


class EncodingFilter(Filter):
    """Text that went through the wrong codec: U+FFFD replacement characters (bytes that were not
    UTF-8), UTF-8 read as cp1252/Latin-1 (ftfy's badness heuristic: `ä¸­æ–‡`), UTF-8 read as
    GBK or Big5 (`涓枃`, `锟斤拷`: re-encoding gives back valid UTF-8 Chinese)."""

    name = "encoding"
    defaults = {"max_replacement_ratio": 0.01, "max_ftfy_badness": 0, "max_misdecoded_ratio": 0.5,
                "misdecoded_min_chars": 8}

    def filter(self, doc: Doc) -> Verdict:
        p = self.opts(doc)
        text = doc.text
        size = len(_SPACE.sub("", text)) or 1
        bad = text.count("\ufffd")
        if p.max_replacement_ratio is not None and bad / size > p.max_replacement_ratio:
            return reject("replacement_chars", f"{bad} U+FFFD replacement characters ({bad / size:.1%} of the text): "
                                               "bytes that were not valid UTF-8")
        if "锟斤拷" in text:
            return reject("mojibake", "contains 锟斤拷 (UTF-8 replacement characters read as GBK)")
        if p.max_ftfy_badness is not None and _UTF8_LEAD_AS_LATIN1.search(text):
            from ftfy.badness import badness  # the field's mojibake detector (imported once, lazily)

            score = badness(text)
            if score > p.max_ftfy_badness:
                fixed = _ftfy_fix(text)
                return reject("mojibake", f"UTF-8 read as cp1252/Latin-1 (ftfy badness {score}); "
                                          f"re-decoded it starts {fixed[:30]!r}")
        if p.max_misdecoded_ratio is not None:
            non_ascii = len(text) - len(text.encode("ascii", "ignore")) - bad
            if non_ascii >= p.misdecoded_min_chars:
                share, codec = zh_text.misdecoded_share(text)
                if share > p.max_misdecoded_ratio:
                    return reject("mojibake", f"UTF-8 read as {codec.upper()}: {share:.0%} of the non-ASCII text "
                                              "decodes back to Chinese")
        return True


def _ftfy_fix(text: str) -> str:
    import ftfy

    return ftfy.fix_encoding(text)


# ---- markup ---------------------------------------------------------------------------------

_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9:-]*(?:\s[^<>]{0,500})?/?>|<!--.*?-->|<!DOCTYPE[^>]*>", re.S)
_ENTITY = re.compile(r"&(?:[a-zA-Z]{2,8}|#\d{2,7}|#[xX][0-9a-fA-F]{2,6});")
_JS = re.compile(r"\bfunction\s*\w*\s*\([^)]{0,80}\)\s*\{|\b(?:var|let|const)\s+[\w$]+\s*=|document\.(?:write|"
                 r"getElement|querySelector|createElement|cookie|location)|window\.(?:location|onload|open|"
                 r"addEventListener)|\$\(\s*(?:document|window|['\"])|\bjavascript:|\.(?:src|href|innerHTML)\s*=|"
                 r"\}\s*\)\s*\(\s*\)\s*;|\brequire\(\s*['\"]|\.addEventListener\(|\bconsole\.log\(")


class MarkupFilter(Filter):
    """HTML and JavaScript left over from text extraction, outside Markdown code (fenced blocks
    and `inline code` are content, e.g. in chats about programming)."""

    name = "markup"
    defaults = {"max_html_ratio": 0.05, "max_js_hits": 1}
    default_apply_to = ("pretrain",)

    def filter(self, doc: Doc) -> Verdict:
        p = self.opts(doc)
        text = doc.prose_text
        size = len(_SPACE.sub("", text))
        if not size:
            return True
        hits = _JS.findall(text)
        if p.max_js_hits is not None and len(hits) > p.max_js_hits:
            return reject("javascript", f"{len(hits)} JavaScript statements outside code blocks, e.g. {hits[0][:30]!r}")
        if p.max_html_ratio is not None:
            tags, entities = _TAG.findall(text), _ENTITY.findall(text)
            # a tag is all markup; an entity stands for one character and counts as one
            chars = sum(len(_SPACE.sub("", t)) for t in tags) + len(entities)
            tags += entities
            if tags and chars / size > p.max_html_ratio:
                return reject("html", f"{len(tags)} HTML tags/entities are {chars / size:.0%} of the text, "
                                      f"e.g. {tags[0][:30]!r}")
        return True


# ---- boilerplate ----------------------------------------------------------------------------

# Phrases of site chrome. Chosen to be specific (注册 alone is in 注册资本, 登录 in 登录月球).
BOILERPLATE_ZH = (
    "版权所有", "版權所有", "版权声明", "保留所有权利", "ICP备", "ICP证", "公网安备", "增值电信业务经营许可证",
    "联系我们", "聯絡我們", "关于我们", "關於我們", "免责声明", "隐私政策", "隱私權政策", "用户协议", "服务条款",
    "网站地图", "网站导航", "友情链接", "广告服务", "广告合作", "商务合作", "返回顶部", "回到顶部", "返回首页",
    "上一篇", "下一篇", "上一页", "下一页", "相关阅读", "相关文章", "相关推荐", "热门推荐", "热门文章", "猜你喜欢",
    "点击查看", "点击进入", "点击这里", "点此进入", "扫一扫", "扫描二维码", "关注我们", "关注公众号", "分享到",
    "责任编辑：", "转载请注明", "本文来源：", "来源：网络", "用户登录", "会员登录", "登录注册", "免费注册", "立即注册",
    "忘记密码", "加入收藏", "设为首页", "客服热线", "在线客服", "投诉建议", "发布时间：", "浏览次数", "阅读次数",
    "打印本页", "关闭窗口", "【打印】", "【关闭】", "字号：", "当前位置：", "您的位置：", "您现在的位置")
BOILERPLATE_EN = re.compile(r"\b(?:copyright ©|© copyright|all rights reserved|privacy policy|terms of use|"
                            r"terms of service|cookie policy|we use cookies|skip to (?:main )?content|sign in|log in|"
                            r"subscribe to our newsletter|share this|read more|click here|powered by)\b", re.I)
# separators of menus and breadcrumbs; /, - and · only with spaces around (a/b is a path, 扎东·次旺 a name)
_NAV_SEP = re.compile(r"\s*(?:[|｜¦»›>•]|&gt;|&raquo;|\s[-·/]\s)\s*")
_NAV_WORDS = ("首页", "主页", "登录", "注册", "返回", "更多", "新闻", "导航")
_SENTENCE_END = re.compile(r"[。！？!?]")


def is_navigation(line: str) -> bool:
    """A menu bar or breadcrumb: 3+ short, different items between explicit separators
    (| > » / •), or 4+ short space-separated Chinese items with a menu word (首页, 登录, 更多 ...),
    and no sentence end. (Chinese puts no spaces between words, so a row of short spaced items
    is a menu; English is spaced anyway, so for it only explicit separators count.)"""
    s = line.strip()
    if not s or _SENTENCE_END.search(s) or (s.startswith("|") and s.endswith("|")):  # a Markdown table row
        return False
    items = [x for x in _NAV_SEP.split(s) if x.strip()]
    seps = len(_NAV_SEP.findall(s))
    if seps >= 2 and len(items) >= 3 and all(display_len(x.strip()) <= 16 for x in items):
        return len(set(items)) >= 0.8 * len(items)  # menu items differ; a repeated list is stuffing
    words = s.split()
    return (len(words) >= 4 and all(display_len(w) <= 12 and zh_text.HAN.match(w) for w in words)
            and len(set(words)) >= 0.8 * len(words) and any(w in s for w in _NAV_WORDS))


def boilerplate_phrase(line: str) -> str | None:
    """The first boilerplate phrase of a line of site chrome, or None. A sentence (it ends in
    。！？) that mentions one phrase (还不如搜点相关文章看。) is prose, not chrome."""
    found = [p for p in BOILERPLATE_ZH if p in line] + BOILERPLATE_EN.findall(line)
    if not found or (len(found) == 1 and _SENTENCE_END.search(line.rstrip()[-1:])):
        return None
    return found[0]


class BoilerplateFilter(Filter):
    """Site chrome: navigation lines and short lines with boilerplate phrases (版权所有, ICP备,
    上一篇, 点击查看, all rights reserved ...). A record is rejected when such lines are more than
    `max_ratio` of its characters, so a one-line footer or menu goes and an article with a
    footer line stays."""

    name = "boilerplate"
    defaults = {"max_ratio": 0.3, "max_line_length": 80}
    default_apply_to = ("pretrain",)

    def filter(self, doc: Doc) -> Verdict:
        p = self.opts(doc)
        lines = doc.prose_lines
        size = sum(len(x.strip()) for x in lines)
        if not size or p.max_ratio is None:
            return True
        nav = boiler = 0
        first = None
        for line in lines:
            if is_navigation(line):
                nav += len(line.strip())
                first = first or ("navigation", line.strip())
            elif display_len(line.strip()) <= p.max_line_length:
                phrase = boilerplate_phrase(line)
                if phrase:
                    boiler += len(line.strip())
                    first = first or (phrase, line.strip())
        if (nav + boiler) / size > p.max_ratio:
            rule = "navigation" if nav >= boiler else "boilerplate"
            what, line = first
            return reject(rule, f"{(nav + boiler) / size:.0%} of the text is menus/site boilerplate "
                                f"({what!r} in {line[:40]!r})")
        return True


# ---- gibberish ------------------------------------------------------------------------------

class GibberishFilter(Filter):
    """Random strings of Chinese characters (SEO spam, generated filler, binary shown as text).
    Real Chinese is written mostly with the common characters, and most of its characters belong
    to dictionary words; random characters are rare ones, or common ones that form no words.
    Judged on the Han characters of Chinese records only (Japanese kanji runs are cut by kana;
    traditional characters are mapped to simplified with OpenCC before the dictionary look-up)."""

    name = "gibberish"
    defaults = {"min_common_ratio": 0.8, "rare_min_chars": 10, "min_word_coverage": 0.35, "coverage_min_chars": 20}
    default_apply_to = ("pretrain",)

    def filter(self, doc: Doc) -> Verdict:
        p = self.opts(doc)
        text = doc.prose_text
        han = zh_text.HAN.findall(text)
        if not zh_text.is_chinese(text, len(han)):
            return True
        if p.min_common_ratio is not None and len(han) >= p.rare_min_chars:
            share = zh_text.common_share(han)
            if share < p.min_common_ratio:
                return reject("rare_chars", f"only {share:.0%} of {len(han)} Chinese characters are common ones "
                                            f"(GB2312/Big5 level 1) < {p.min_common_ratio:.0%}")
        if p.min_word_coverage is not None and len(han) >= p.coverage_min_chars:
            covered, total = zh_text.word_coverage(zh_text.to_simplified(text, han))
            if total >= p.coverage_min_chars and covered / total < p.min_word_coverage:
                return reject("char_soup", f"only {covered / total:.0%} of {total} Chinese characters form "
                                           f"dictionary words < {p.min_word_coverage:.0%}: a random string of characters")
        return True
