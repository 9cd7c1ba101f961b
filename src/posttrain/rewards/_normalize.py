"""Text clean-up of one extracted answer before parsing: units, currency, spacing, separators.

Each rule is a regular expression over a bounded string, so the cost is linear in the
(already capped) answer length.  Conventions decided here are documented in
``posttrain.rewards.math``.
"""

from __future__ import annotations

import re

UNIT_WORDS = (
    "square",
    "sq",
    "cubic",
    "cm",
    "mm",
    "km",
    "kg",
    "mg",
    "lb",
    "lbs",
    "pounds",
    "pound",
    "ounces",
    "ounce",
    "oz",
    "miles",
    "mile",
    "mph",
    "feet",
    "foot",
    "ft",
    "inches",
    "inch",
    "yards",
    "yard",
    "meters",
    "meter",
    "metres",
    "metre",
    "seconds",
    "second",
    "sec",
    "minutes",
    "minute",
    "mins",
    "min",
    "hours",
    "hour",
    "hrs",
    "hr",
    "days",
    "day",
    "weeks",
    "week",
    "months",
    "month",
    "years",
    "year",
    "dollars",
    "dollar",
    "cents",
    "cent",
    "yuan",
    "euros",
    "euro",
    "units",
    "unit",
    "liters",
    "litres",
    "liter",
    "litre",
    "ml",
    "gallons",
    "gallon",
    "grams",
    "gram",
    "people",
    "students",
    "degrees",
    "degree",
    "points",
    "ways",
    "times",
    "cookies",
    "apples",
    "marbles",
    "books",
    "pages",
    "kilometers",
)
_UNIT = "|".join(sorted(UNIT_WORDS, key=len, reverse=True))
_UNIT_AFTER_NUMBER = re.compile(
    r"(?<=[\d}%])\s*(?:\\(?:text|mbox|textnormal|mathrm|textbf|textit|rm)\s*\{\s*)?"
    rf"(?:(?:{_UNIT})\b\.?\s*)+\}}?(?:\s*\^\s*\{{?\s*[23]\s*\}}?|[²³])?"
)
# Malformed LaTeX models leave behind: a stray trailing backslash ("\\frac{1}{2}\\", "5\\"), one before a
# digit ("\\5"), and a doubled backslash fused to a command ("\\\\frac").
_STRAY_TRAILING_BACKSLASH = re.compile(r"(?<!\\)\\+\s*$")
_BACKSLASH_DIGIT = re.compile(r"(?<!\\)\\(?=\d)")
_DOUBLED_COMMAND = re.compile(r"\\\\(?=(?:d?frac|sqrt|pi|text|cdot|times|infty|left|right)\b|(?:d?frac|sqrt)\{)")
# Words after a number that only describe it: "4\\text{ red marbles}", "15\\text{ km/h}", "6\\text{th}";
# never a connective ("5 or 6", "2 times 3"), and only at the end of the answer.
_TRAILING_WORDS = re.compile(
    r"(?<=[\d}%.])\s*(?:\\[,;:! ]\s*)*\\(?:text|mbox|textnormal|textrm|textit|textbf|mathrm)\s*"
    r"\{\s*([A-Za-z][A-Za-z /.'\-]{0,80})\}\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*$"
)
_CONNECTIVE = re.compile(r"\b(?:and|or|times|plus|minus|divided|over|than|to|of)\b", re.I)
_LEADING_ANSWER_IS = re.compile(r"^\s*\\text\s*\{\s*(?:the\s+)?(?:final\s+)?answer\s+is\s*:?\s*\}\s*", re.I)
_SINGLE_LETTER_UNIT = re.compile(r"^([-\d.,\s]+?)\s*(?:m|g|l|s|h)(?:\^\s*\{?[23]\}?|[²³])?$")
_TEXT_CMD = re.compile(r"\\(?:text|mbox|textnormal|textbf|textit|textrm|texttt|textsf)\s*\{([^{}]{0,200})\}")
_FONT_CMD = re.compile(r"\\(?:mathrm|mathbf|mathit|boldsymbol|bm|mathsf|operatorname|mathbb)\s*\{([^{}]{0,200})\}")
_THOUSANDS = re.compile(r"(?<![\d.,])([1-9]\d{0,2})((?:,\d{3})+)(?![\d])")
_SPACE_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3})((?: \d{3})+)(?![\d.])")
_CONNECTOR = re.compile(r"(?:(?<=[\s$}\d)])|^)(?:and|or|和|或)(?=[\s${(\\\-\d]|$)", re.I)
_GLUED_OR = re.compile(r"(?<=[\d)])or(?=[A-Za-z(])")
_SPACES = re.compile(r"(?<!\\)\\[,;:! ]|~")
_QUAD = re.compile(r"\\q?quad")
_DROP = re.compile(
    r"\\left\s*[.]?|\\right\s*[.]?|\\[bB]igg?[lr]?|\\displaystyle|\\limits|\\nonumber|"
    r"\\\$|\$|€|£|¥|\\euro|\\\[|\\\]|\\\(|\\\)|"
    r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|°|"
    r"<\|[^|<>]{0,40}\|>"
)
_PERCENT_WORD = re.compile(r"\s*\b(?:percentage|percent|pct)\b", re.I)
_UNICODE = str.maketrans(
    {
        "−": "-",
        "–": "-",
        "×": "*",
        "·": "*",
        "÷": "/",
        "，": ",",
        "：": ":",
        "；": ";",
        "（": "(",
        "）": ")",
        "【": "[",
        "】": "]",
        "％": "%",
        "\u00a0": " ",
        "\u3000": " ",
        "π": "\\pi ",
        "√": "\\sqrt ",
        "∞": "\\infty ",
        "²": "^2",
        "³": "^3",
        "∪": "\\cup ",
    }
)
_EMPTY_GROUP = re.compile(r"\{\s*,\s*\}")


def _text_replacement(match: re.Match) -> str:
    content = match.group(1).strip()
    if content.lower() in ("and", "or", ",", "and/or", "或", "和"):
        return ","
    if content == "":
        return " "
    return "\\text{" + content + "}"


def clean(text: str) -> str:
    """Normalised answer text: no currency, degree marks, units, spacing commands.

    >>> clean("$1,000.99$ \\\\text{ meters}")
    '1000.99'
    """
    s = text.translate(_UNICODE).replace("\x00", "").replace('\\"', '"')
    s = _DOUBLED_COMMAND.sub(r"\\", s)
    s = _BACKSLASH_DIGIT.sub("", s)
    s = _STRAY_TRAILING_BACKSLASH.sub("", s)
    s = _LEADING_ANSWER_IS.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\cfrac", "\\frac")
    s = _EMPTY_GROUP.sub("", s)  # 14{,}916: TeX thousands separator
    s = re.sub(r",\\!\s*", ",", s)  # 11,\! 111: TeX thousands separator
    s = _DROP.sub("", s)
    s = _QUAD.sub(" , ", s)
    s = _SPACES.sub(" ", s)
    s = _FONT_CMD.sub(r"{\1}", s)
    s = s.replace("\\%", "%")
    s = _PERCENT_WORD.sub("%", s)
    s = _TRAILING_WORDS.sub(_describing_words, s)  # before units: "15\\text{ km/h}" is words, not "km" + "/h"
    s = _UNIT_AFTER_NUMBER.sub("", s)
    s = _TEXT_CMD.sub(_text_replacement, s)
    s = _GLUED_OR.sub(",", s)
    s = _CONNECTOR.sub(",", s)
    s = _THOUSANDS.sub(_join_thousands, s)
    s = _SPACE_THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(" ", ""), s)
    single = _SINGLE_LETTER_UNIT.match(s.strip())
    if single:
        s = single.group(1)
    s = re.sub(r"(?:\s*,)+", ",", s)
    s = s.strip().rstrip(".,;:").lstrip(",;:").strip()
    s = s.strip("\"'").strip()
    return s


def _describing_words(match: re.Match) -> str:
    return match.group(0) if _CONNECTIVE.search(match.group(1)) else ""


def _join_thousands(match: re.Match) -> str:
    # (3,100) is a pair, not three thousand one hundred: keep commas between brackets.
    start, end = match.span()
    text = match.string
    before = text[:start].rstrip()[-1:]
    after = text[end:].lstrip()[:1]
    if before in ("(", "[", "{") and after in (")", "]", "}"):
        return match.group(0)
    return match.group(1) + match.group(2).replace(",", "")


_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")


def variants(cleaned: str) -> list[str]:
    """Readings of one answer: ``1,5`` is the pair (1, 5) or, in many locales, 1.5."""
    if _DECIMAL_COMMA.match(cleaned):
        return [cleaned, cleaned.replace(",", ".")]
    return [cleaned]
