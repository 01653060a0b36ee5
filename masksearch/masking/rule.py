"""Rule-based salient-span extraction: names, dates, numbers, acronyms and domain terms.

Pure regex/heuristics, no model: fast, offline and deterministic. Every span carries exact
character offsets into the text it was extracted from (`text[start:end] == span.text`).
Labels: ENTITY (capitalised names: person/organisation/place are not told apart), DATE,
NUMBER, TERM (acronyms and words with scientific suffixes).
"""

from __future__ import annotations

import re

from masksearch.types import Span

MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
WEEKDAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_YEAR = r"(?:1\d{3}|20\d{2})"
_B = r"(?<![\w.,])"  # left boundary: not inside a word or a number
_E = r"(?![\w])"  # right boundary

DATE_PATTERNS = [
    # 29 May 1953 / 29th of May 1953
    rf"{_B}\d{{1,2}}(?:st|nd|rd|th)?(?:\s+of)?\s+(?:{MONTHS})\.?,?\s+\d{{3,4}}{_E}",
    # July 20, 1969 / July 20 1969
    rf"\b(?:{MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{3,4}}{_E}",
    # May 1953
    rf"\b(?:{MONTHS})\s+{_YEAR}{_E}",
    # 29 May / May 29
    rf"{_B}\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{MONTHS}){_E}",
    rf"\b(?:{MONTHS})\s+\d{{1,2}}(?:st|nd|rd|th)?{_E}(?!,?\s*\d)",
    # years 1000-2099, decades (1980s), BC/AD
    rf"{_B}{_YEAR}s?(?:\s+(?:BC|BCE|AD|CE))?{_E}(?![,.]\d)",
]

UNITS = (
    "metres|meters|metre|meter|kilometres|kilometers|kilometre|kilometer|centimetres|centimeters|"
    "millimetres|millimeters|km|cm|mm|m|miles|mile|feet|foot|ft|inches|inch|yards|"
    "kilograms|kilogram|kg|grams|gram|g|tonnes|tons|tonne|ton|pounds|lb|litres|liters|"
    "square\\s+kilometres|square\\s+kilometers|square\\s+miles|km2|km²|hectares|acres|"
    "degrees|°C|°F|%|percent|per\\s+cent|million|billion|trillion|thousand|hundred|"
    "people|inhabitants|residents|years|year|days|hours|minutes|seconds|species|"
    "votes|seats|members|employees|copies|volts|watts|kW|MW|GW|Hz|MHz|GHz|bytes|GB|MB|TB|"
    "dollars|euros|pounds\\s+sterling|yen|kcal|calories|light-years|AU"
)
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
NUMBER_PATTERNS = [
    rf"{_B}[$€£¥]\s?(?:{_NUM})(?:\s+(?:million|billion|trillion))?{_E}",
    rf"{_B}(?:{_NUM})(?:\s?(?:{UNITS}))(?![\w])",
    # bare numbers: two digits or more ("6 members" is rarely worth a search)
    rf"{_B}(?:\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+\.\d+|\d{{2,}}){_E}(?![.,]\d)",
]

CONNECTORS = {
    "of",
    "de",
    "da",
    "van",
    "von",
    "der",
    "den",
    "del",
    "della",
    "di",
    "du",
    "des",
    "la",
    "le",
    "y",
    "et",
    "&",
    "bin",
    "ibn",
    "al",
    "zu",
    "ter",
    "dos",
    "das",
    "do",
}
# two-word connectors ("Bank of the West", "Isle of the Dead")
CONNECTOR_PAIRS = {("of", "the"), ("de", "la"), ("van", "der"), ("van", "den"), ("von", "der")}
# Capitalised words that are not names when on their own (mostly sentence-initial).
STOPWORDS = {
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "it",
    "its",
    "he",
    "she",
    "his",
    "her",
    "hers",
    "they",
    "their",
    "them",
    "we",
    "our",
    "you",
    "your",
    "i",
    "my",
    "me",
    "him",
    "us",
    "in",
    "on",
    "at",
    "by",
    "for",
    "from",
    "to",
    "of",
    "with",
    "without",
    "within",
    "into",
    "onto",
    "after",
    "before",
    "during",
    "since",
    "until",
    "while",
    "when",
    "where",
    "which",
    "who",
    "whom",
    "whose",
    "what",
    "why",
    "how",
    "although",
    "though",
    "because",
    "if",
    "unless",
    "as",
    "and",
    "but",
    "or",
    "nor",
    "so",
    "yet",
    "however",
    "moreover",
    "also",
    "furthermore",
    "thus",
    "therefore",
    "then",
    "there",
    "here",
    "today",
    "now",
    "later",
    "both",
    "each",
    "every",
    "all",
    "some",
    "many",
    "most",
    "several",
    "other",
    "another",
    "such",
    "one",
    "two",
    "three",
    "first",
    "second",
    "third",
    "last",
    "about",
    "around",
    "between",
    "among",
    "under",
    "over",
    "through",
    "throughout",
    "despite",
    "according",
    "following",
    "including",
    "is",
    "was",
    "are",
    "were",
    "be",
    "been",
    "has",
    "have",
    "had",
    "do",
    "does",
    "did",
    "not",
    "no",
    "yes",
    "can",
    "could",
    "may",
    "might",
    "will",
    "would",
    "should",
    "must",
    "shall",
    "sir",
    "mr",
    "mrs",
    "ms",
    "dr",
    "lord",
    "lady",
    "born",
    "died",
    "known",
    "like",
    "unlike",
    "along",
    "early",
    "late",
    "upon",
    "once",
    "only",
    "even",
    "still",
    "often",
    "yesterday",
    "tomorrow",
    "recently",
    "currently",
    "initially",
    "originally",
    "eventually",
    "finally",
    "earlier",
    "meanwhile",
    "nevertheless",
    "nonetheless",
    "instead",
    "overall",
    "afterwards",
    "subsequently",
    "additionally",
    "similarly",
    "likewise",
    "consequently",
    "hence",
    "indeed",
    "perhaps",
    "traditionally",
    "historically",
    "generally",
    "usually",
    "typically",
    "notably",
    "especially",
    "formerly",
    "previously",
    "today's",
    "whereas",
    "whether",
    "let",
    "see",
    "note",
    "towards",
    "toward",
    "via",
    "per",
    "than",
}
# Titles dropped from the front of a longer name ("Commander Neil Armstrong" → "Neil Armstrong").
HONORIFICS = {
    "commander",
    "captain",
    "colonel",
    "lieutenant",
    "admiral",
    "sergeant",
    "president",
    "chancellor",
    "senator",
    "governor",
    "king",
    "queen",
    "prince",
    "princess",
    "emperor",
    "empress",
    "pope",
    "professor",
    "prof",
    "archbishop",
    "bishop",
    "cardinal",
    "chairman",
}
TERM_SUFFIXES = (
    "ology",
    "ologies",
    "ologist",
    "ism",
    "isms",
    "osis",
    "itis",
    "ium",
    "ics",
    "istry",
    "ography",
    "ometry",
    "genesis",
    "lysis",
    "synthesis",
    "activity",
    "otherapy",
    "ectomy",
    "urgy",
    "onomy",
    "iatry",
)
_SUFFIX_RE = "|".join(sorted(TERM_SUFFIXES, key=len, reverse=True))
TERM_PATTERN = rf"\b[a-z][a-z-]{{3,}}(?:{_SUFFIX_RE})\b"
# common words that happen to end in a term suffix
NOT_TERMS = {
    "millennium",
    "medium",
    "premium",
    "stadium",
    "podium",
    "aquarium",
    "auditorium",
    "equilibrium",
    "symposium",
    "gymnasium",
    "consortium",
    "moratorium",
    "sanatorium",
    "condominium",
    "delirium",
    "tedium",
    "opium",
    "criticism",
    "mechanism",
    "organism",
    "tourism",
    "terrorism",
    "optimism",
    "pessimism",
    "journalism",
    "topics",
    "politics",
    "ethics",
    "dynamics",
    "statistics",
    "graphics",
    "electronics",
    "economics",
    "basics",
}
ACRONYM_PATTERN = r"(?<![\w-])[A-Z][A-Z0-9&]{1,7}s?(?![\w-])"

_WORD = re.compile(r"[^\W\d_][\w'’.-]*|&")
_CAP_TOKEN = re.compile(r"(?<![\w-])(?:(?:St|Mt|Ft|Dr|Mr|Mrs|Ms|Jr|Sr|[A-Z])\.|[^\W\d_][\w'’-]*|&)")
_TRAILING_NUMBER = re.compile(r" \d{1,3}(?![\w,.]|\s?(?:" + UNITS + r")(?!\w))")
_SENT_OPENERS = '.!?:;"“”([\n'
_COMPILED = (
    [(re.compile(p), "DATE", 3) for p in DATE_PATTERNS]
    + [(re.compile(p), "NUMBER", 4 if i < 2 else 2) for i, p in enumerate(NUMBER_PATTERNS)]
    + [(re.compile(ACRONYM_PATTERN), "TERM", 1), (re.compile(TERM_PATTERN), "TERM", 0)]
)
_STANDALONE_DATE = re.compile(rf"^(?:{MONTHS}|{WEEKDAYS})$")


def extract_rule_spans(text: str) -> list[Span]:
    """All salient-span candidates of `text`, sorted and non-overlapping (longest match wins)."""
    found: list[tuple[int, int, str, int]] = []
    for rx, label, prio in _COMPILED:
        found.extend(
            (m.start(), m.end(), label, prio)
            for m in rx.finditer(text)
            if m.group().lower() not in NOT_TERMS
        )
    # a name ending in a number ("Apollo 11") outranks the bare number inside it
    found.extend(
        (s, e, label, 2 if text[e - 1].isdigit() else 1) for s, e, label in _capitalised_names(text)
    )
    # Priority (numbers with units > dates > numbers > names/acronyms > terms), then longest,
    # then earliest: greedy non-overlapping pick.
    found.sort(key=lambda t: (-t[3], -(t[1] - t[0]), t[0]))
    taken: list[tuple[int, int, str]] = []
    for s, e, label, _ in found:
        if e <= s or any(s < te and ts < e for ts, te, _ in taken):
            continue
        taken.append((s, e, label))
    taken.sort()
    return [Span(s, e, text[s:e], label) for s, e, label in taken]


def _is_cap(tok: str) -> bool:
    return tok[:1].isupper()


def _capitalised_names(text: str) -> list[tuple[int, int, str]]:
    """Runs of capitalised words joined by single spaces and name connectors ("of", "de", "van")."""
    tokens = [(m.start(), m.end(), m.group()) for m in _CAP_TOKEN.finditer(text)]

    def joined(a: int, b: int) -> bool:  # tokens a and b separated by one plain space
        return text[tokens[a][1] : tokens[b][0]] == " "

    def connector_len(j: int) -> int:  # connector words starting at token j, then a capital
        words = [t[2] for t in tokens[j : j + 3]]
        if (
            len(words) >= 3
            and (words[0], words[1]) in CONNECTOR_PAIRS
            and joined(j, j + 1)
            and joined(j + 1, j + 2)
            and _is_cap(words[2])
        ):
            return 2
        if len(words) >= 2 and words[0] in CONNECTORS and joined(j, j + 1) and _is_cap(words[1]):
            return 1
        return 0

    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tokens):
        if not _is_cap(tokens[i][2]):
            i += 1
            continue
        j = i + 1
        while j < len(tokens) and joined(j - 1, j):
            if _is_cap(tokens[j][2]):
                j += 1
            elif n := connector_len(j):
                j += n + 1
            else:
                break
        out.extend(_trim_run(text, tokens[i:j]))
        i = j
    return out


def _trim_run(text: str, run: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Drop leading stopwords / connectors, trailing connectors and a final possessive."""
    while run and (run[0][2].lower().strip(".") in STOPWORDS or run[0][2].lower() in CONNECTORS):
        run = run[1:]
    while len(run) > 1 and run[0][2].lower() in HONORIFICS and _is_cap(run[1][2]):
        run = run[1:]
    while run and (run[-1][2].lower() in CONNECTORS or not _is_cap(run[-1][2])):
        run = run[:-1]
    if not run:
        return []
    start, end = run[0][0], run[-1][1]
    span = text[start:end]
    for suffix in ("'s", "’s", "'", "’"):
        if span.endswith(suffix):
            end -= len(suffix)
            break
    while end > start and text[end - 1] in ".-":
        end -= 1
    if (num := _TRAILING_NUMBER.match(text, end)) and end == run[-1][1]:
        end = num.end()  # "Apollo 11", "Louis 14"
    elif len(run) == 1 and not run[0][2].isupper():
        before = text[:start].rstrip()
        if not before or before[-1] in _SENT_OPENERS:
            return []  # a lone capitalised word opening a sentence is usually an ordinary word
    span = text[start:end]
    if len(span) < 2 or span.lower() in STOPWORDS:
        return []
    label = "DATE" if _STANDALONE_DATE.match(span) else "ENTITY"
    return [(start, end, label)]
