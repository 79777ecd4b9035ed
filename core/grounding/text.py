"""Sentences and the tokens the verifier compares: content words, and the strict ones.

Strict tokens are the parts of a sentence a reader acts on and a small model gets wrong most:
numbers (with number words read as digits), amounts (their currency), dates (months, weekdays),
names (capitalised words inside a sentence, CamelCase, codes like SEV1) and commands (`code`,
/slash commands, #channels, URLs, e-mail addresses). A sentence may only keep one when its
supporting chunk contains it::

    >>> sorted(strict_tokens("Primary on-call pays $150 a week in PagerDuty.").values())
    ['$', '150', 'pagerduty']
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Sentence ends: . ! ? (optionally closed by a quote or bracket) before whitespace and a capital,
# a digit, a quote, a bracket or a markdown marker; and every line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[A-Z0-9\"'“‘(\[*`/#>_-])")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "approx.", "incl.", "no.", "cf.", "dr.", "mr.", "ms.")
_LIST_MARK = re.compile(r"^\s*(?:[-*+•>]+|\d{1,2}[.)])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}")
_CITATION = re.compile(r"\s*\[(\d{1,2})(?:\s*,\s*\d{1,2})*\]")
_MARKUP = re.compile(r"\*\*|__|(?<!\w)_(?=\w)|(?<=\w)_(?!\w)")

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*(?:st|nd|rd|th)?(?![\w])|(?<![\w])\d+(?=%|[a-zA-Z]{1,3}\b)")
_COMMAND = re.compile(
    r"`([^`\n]{1,80})`"  # code spans
    r"|(?<![\w/])(/[a-z][\w-]*(?:\s+[a-z][\w-]*){0,2})"  # /slash commands and their words
    r"|(?<![\w#])(#[a-z][\w-]*)"  # #channels
    r"|(https?://[^\s)>\]]+)"  # URLs
    r"|([\w.+-]+@[\w-]+\.[\w.-]+)",  # e-mail addresses
    re.IGNORECASE,
)
_CURRENCY = {"€": "eur", "$": "$", "£": "gbp", "eur": "eur", "euro": "eur", "euros": "eur",
             "usd": "$", "dollar": "$", "dollars": "$", "gbp": "gbp", "pound": "gbp", "pounds": "gbp",
             "chf": "chf", "%": "%", "percent": "%"}  # fmt: skip
_MONTHS = ("january february march april may june july august september october november december "
           "monday tuesday wednesday thursday friday saturday sunday").split()  # fmt: skip
NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "ninety": "90", "hundred": "100",
     "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5", "sixth": "6",
     "seventh": "7", "eighth": "8", "ninth": "9", "tenth": "10", "once": "1", "twice": "2",
     "single": "1", "half": "50%"}  # fmt: skip
# "first", "second" and "may" are numbers or months only sometimes: never strict on their own.
_AMBIGUOUS = {"first", "second", "single", "once", "may", "half", "one"}

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either else
    ever every few for from further get gets got had has have having he her here hers him his how
    i if in into is it its itself just let lets like may me might more most much must my no nor
    not now of off on once only or other our ours out over own per please same shall she should so
    some such than that the their theirs them then there these they this those through to too
    under until up upon us very via was we were what when where which while who whom whose why
    will with within without would yes yet you your yours yourself""".split()
)


@dataclass(frozen=True)
class Sentence:
    """One sentence of a text: what it says (``text``, citation markers removed) and what it cited."""

    text: str
    cited: tuple[int, ...] = ()
    heading: bool = False
    line: int = 0  # which line of the text it came from (sentences of one line are rejoined on one)


def clean(text: str) -> str:
    """Normalise Unicode and strip Markdown emphasis, so ``**20 days**`` reads as ``20 days``."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u2013", "-").replace("\u2014", " - ").replace("\u00a0", " ")
    return _MARKUP.sub("", text)


def split_sentences(text: str) -> list[Sentence]:
    """The sentences of ``text``: block by block (paragraphs, list items, table rows, headings),
    then at sentence ends.

    A hard-wrapped paragraph is one block (its lines are rejoined); citation markers (``[2]``,
    ``[1, 3]``) belong to the sentence they follow and are returned in ``cited``; headings are kept
    (flagged) so quote selection can skip them.
    """
    out: list[Sentence] = []
    for number, (block, heading) in enumerate(_blocks(clean(text))):
        for piece in _split_line(block):
            cited = tuple(int(n) for m in _CITATION.finditer(piece) for n in re.findall(r"\d+", m.group()))
            body = _CITATION.sub("", piece).strip()
            if body.startswith((".", ",", ";")):
                body = body[1:].strip()
            if out and not body and cited:  # "[2]" alone after a sentence belongs to it
                last = out[-1]
                out[-1] = Sentence(last.text, last.cited + cited, last.heading, last.line)
                continue
            if any(ch.isalnum() for ch in body):
                out.append(Sentence(body, cited, heading, number))
    return out


def _blocks(text: str) -> list[tuple[str, bool]]:
    """(text, is heading) of each paragraph, list item, table row and heading; wrapped lines rejoined."""
    blocks: list[tuple[str, bool]] = []
    open_block = False  # whether the last block may continue on the next line
    for raw in text.splitlines():
        line = raw.strip()
        if not line or _TABLE_RULE.match(line):
            open_block = False
            continue
        if _HEADING.match(line):
            blocks.append((line.lstrip("#").strip(), True))
            open_block = False
        elif line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|") if cell.strip()]
            blocks.append((" ; ".join(cells), False))
            open_block = False
        elif _LIST_MARK.match(line):
            blocks.append((_LIST_MARK.sub("", line), False))
            open_block = True
        elif open_block and blocks:
            blocks[-1] = (f"{blocks[-1][0]} {line}", False)
        else:
            blocks.append((line, False))
            open_block = True
    return blocks


def _split_line(line: str) -> list[str]:
    """Split one line at sentence ends, not after common abbreviations."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(line):
        before = line[start : match.start()].lower()
        if before.endswith(_ABBREVIATIONS) or re.search(r"(?:^|\s)[a-z]\.$", before):
            continue
        pieces.append(line[start : match.start()].strip())
        start = match.end()
    pieces.append(line[start:].strip())
    # A citation marker at the start of the next piece belongs to the previous one.
    merged: list[str] = []
    for piece in pieces:
        lead = re.match(r"^(\[\d{1,2}(?:\s*,\s*\d{1,2})*\])+", piece)
        if lead and merged:
            merged[-1] += " " + lead.group()
            piece = piece[lead.end() :].strip()
        if piece:
            merged.append(piece)
    return merged


_IRREGULAR = {"daily": "day", "paid": "pay", "ill": "sick", "illness": "sick", "hires": "hire",
              "hired": "hire", "kept": "keep", "left": "leave", "went": "go", "took": "take"}  # fmt: skip


@lru_cache(maxsize=8192)
def stem(word: str) -> str:
    """A light English stem, enough to match hotel/hotels, approve/approved/approval, night/nightly."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = _IRREGULAR.get(w, w)
    if len(w) <= 3 or w.isdigit():
        return w
    for suffix, repl in (("ies", "y"), ("ied", "y"), ("ly", ""), ("ing", ""), ("ed", ""), ("es", ""),
                         ("als", ""), ("al", ""), ("s", ""), ("e", "")):  # fmt: skip
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: len(w) - len(suffix)] + repl
            break
    if len(w) > 4 and w[-1] == w[-2] and w[-1] not in "lsaeiou":
        w = w[:-1]  # shipped -> shipp -> ship
    return w


def content_words(text: str) -> list[str]:
    """Stems of the words that carry meaning (stop words left out, number words read as digits)."""
    out = []
    for word in _WORD.findall(clean(text).lower()):
        if word in NUMBER_WORDS and word not in _AMBIGUOUS:
            out.append(NUMBER_WORDS[word])
        elif word not in STOPWORDS and (len(word) > 1 or word.isdigit()):
            out.append(stem(word))
    return out


def _norm_number(raw: str) -> str:
    raw = re.sub(r"(st|nd|rd|th)$", "", raw.lower())
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", raw):
        raw = raw.replace(",", "")
    if re.fullmatch(r"\d+\.0+", raw):
        raw = raw.split(".")[0]
    if re.fullmatch(r"\d{1,2}:\d{2}", raw):  # 9:00 and 09:00 are the same time
        hours, minutes = raw.split(":")
        raw = f"{int(hours)}:{minutes}"
    return raw


def numbers(text: str) -> set[str]:
    """The numbers in ``text``, normalised (1,500 → 1500, 09:00 → 9:00, "three" → 3)."""
    text = clean(text)
    found = {_norm_number(m.group()) for m in _NUMBER.finditer(text)}
    for word in _WORD.findall(text.lower()):
        if word in NUMBER_WORDS and word not in _AMBIGUOUS:
            found.add(NUMBER_WORDS[word])
    # A time's hour is also a number in prose ("10:00" answers "by 10").
    return found


def commands(text: str) -> set[str]:
    """Code spans, /commands, #channels, URLs and e-mail addresses, lower-cased."""
    found = set()
    for match in _COMMAND.finditer(clean(text)):
        value = next(g for g in match.groups() if g)
        found.add(value.strip().rstrip(".,;:").lower())
    return found


def _names(text: str) -> set[str]:
    """Capitalised words not at a sentence start, CamelCase words and letter-digit codes."""
    found: set[str] = set()
    words = list(re.finditer(r"[^\W_][\w'’]*", text))
    for i, match in enumerate(words):
        word = match.group().rstrip("'’")
        before = text[: match.start()].rstrip()
        sentence_start = i == 0 or before.endswith((".", "!", "?", ":", ";", "(", '"', "“", "-", ">", "|"))
        lower = word.lower()
        if lower in STOPWORDS or lower in NUMBER_WORDS or lower in _MONTHS:
            continue
        camel = re.search(r"[a-z][A-Z]", word) is not None
        code = re.search(r"[A-Za-z]", word) is not None and re.search(r"\d", word) is not None
        upper = len(word) >= 2 and word.isupper()
        if camel or code or upper or (word[0].isupper() and not sentence_start):
            found.add(lower)
    return found


def strict_tokens(text: str) -> dict[str, str]:
    """The strict tokens of a sentence, each mapped to its key: number, currency, date, name or command.

    Keys are what a chunk must contain (see :func:`strict_vocabulary`); values are for display.
    """
    text = clean(text)
    out: dict[str, str] = {}
    for cmd in commands(text):
        out[f"cmd:{cmd}"] = cmd
    stripped = _COMMAND.sub(" ", text)
    for number in numbers(stripped):
        out[f"num:{number}"] = number
    lowered = stripped.lower()
    for symbol in ("€", "$", "£", "%"):
        if symbol in lowered:
            out[f"cur:{_CURRENCY[symbol]}"] = _CURRENCY[symbol]
    for word in _WORD.findall(lowered):
        if word in _CURRENCY:
            out[f"cur:{_CURRENCY[word]}"] = _CURRENCY[word]
        elif word in _MONTHS and word != "may":
            out[f"date:{word}"] = word
    if re.search(r"\b\d{1,2}(?:st|nd|rd|th)?\s+May\b|\bMay\s+\d{1,2}\b", stripped):
        out["date:may"] = "may"  # the month, not "you may"
    for name in _names(stripped):
        if name not in _CURRENCY:
            out[f"name:{stem(name)}"] = name
    return out


_RATE = re.compile(
    r"(?<![\w.])[$€£]?\s?(\d+(?:[.,:]\d+)*)\s*%?\s*(?:[a-z]+\s+)?(?:per|a|an|each|every)\s+"
    r"(day|week|month|year|night|hour|quarter)s?\b"
)


def rates(text: str) -> set[tuple[str, str]]:
    """(amount, period) of each rate a sentence states: "750 EUR per month" → ("750", "month")."""
    return {(_norm_number(m.group(1)), m.group(2)) for m in _RATE.finditer(clean(text).lower())}


def rate_in(rate: tuple[str, str], text: str) -> bool:
    """Whether ``text`` gives the amount with the same period within a few words of it.

    "180 EUR per night (250 EUR in Tokyo)" gives 250 per night; "750 EUR to equip a home office"
    gives no monthly 750.
    """
    number, period = rate
    lowered = clean(text).lower()
    for m in re.finditer(r"(?<![\w.])\d+(?:[.,:]\d+)*", lowered):
        if _norm_number(m.group()) != number:
            continue
        before = " ".join(lowered[: m.start()].split()[-6:])
        after = " ".join(lowered[m.end() :].split()[:7])
        if re.search(rf"\b{period}(?:s|ly)?\b", f"{before} {after}"):
            return True
    return False


def strict_vocabulary(text: str) -> frozenset[str]:
    """Every strict key a chunk offers: its numbers, currencies, months, commands and word stems.

    Names are checked against all of a chunk's words (a chunk may mention "Tokyo" in lower case, or
    at a sentence start), commands against its commands and, as text, inside its lower-cased text.
    """
    text = clean(text)
    keys = {f"cmd:{c}" for c in commands(text)}
    keys |= {f"num:{n}" for n in numbers(text)}
    lowered = text.lower()
    for symbol in ("€", "$", "£", "%"):
        if symbol in lowered:
            keys.add(f"cur:{_CURRENCY[symbol]}")
    for word in _WORD.findall(lowered):
        if word in _CURRENCY:
            keys.add(f"cur:{_CURRENCY[word]}")
        if word in _MONTHS:
            keys.add(f"date:{word}")
        keys.add(f"name:{stem(word)}")
    return frozenset(keys)


def command_in(command_key: str, text_lower: str) -> bool:
    """Whether a command key (``cmd:/deploy api rollback``) appears verbatim in a chunk's text."""
    return command_key.removeprefix("cmd:") in text_lower
