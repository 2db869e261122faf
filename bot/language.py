"""The user's language: the Slack locale as template variables, and "answer in their language".

Slack's `users.info` (with `include_locale=true`) gives each user's locale (`fr-FR`). It
fills two system-message placeholders: `{locale}` (as Slack gives it, `unknown` when it
did not) and `{language}` (the locale's language in English, `French`; when the locale is
unknown, "the language of the user's message", so "Answer in {language}." still reads).

Unless the channel's system message already speaks about language (it uses `{language}`,
or names a language or the word "language"), Candor adds one instruction: answer in the
language of the question, when that is not the language the system message is written in
(English unless the detector reads it as another). Which language that is comes from a small stopword detector
(`detect`) for English, French, German, Spanish, Italian, Portuguese and Dutch: cheap,
no model to download. When it is unsure (a short or mixed message) the locale decides.
A non-English answer language gets the instruction in that language first ("Réponds en
français."), then in English, which every model follows.

Imports: the standard library only.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    #: "Answer in <this language>." written in the language itself.
    instruction: str
    stopwords: frozenset[str]
    #: Letters that, seen in a message, point to this language.
    letters: str = ""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Frequent function words, chosen to be distinctive: words shared by several of these
# languages ("de", "a", "la", "en", "e", "tu", "es") are left out, so a hit is evidence.
LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language(
            "en",
            "English",
            "Answer in English.",
            _words(
                "the and is are was were what how why when where who which do does did "
                "i you we they it this that these those with of to for my your our can "
                "could would should will have has not there from about please"
            ),
        ),
        Language(
            "fr",
            "French",
            "Réponds en français.",
            _words(
                "le les des du est sont je il elle nous vous ils elles une un ce cette "
                "ces qui quoi comment pourquoi quand où avec pour sur dans pas ne mon ma "
                "mes ton ta votre vos notre au aux et c'est j'ai faut peux puis-je "
                "est-ce qu'il qu'est-ce"
            ),
            "çœéèêàù",
        ),
        Language(
            "de",
            "German",
            "Antworte auf Deutsch.",
            _words(
                "der die das und ist sind ich du wir ihr sie nicht ein eine einen mit "
                "für auf wie was warum wann wo wer kann können mein dein unser bitte "
                "den dem des zu im gibt haben habe"
            ),
            "äöüß",
        ),
        Language(
            "es",
            "Spanish",
            "Responde en español.",
            _words(
                "el los las son yo tú él ella nosotros ustedes una un qué cómo por "
                "porque cuándo dónde quién con para mi mis su sus hay puedo "
                "puedes está están y del al muy"
            ),
            "ñ¿¡áíóú",
        ),
        Language(
            "it",
            "Italian",
            "Rispondi in italiano.",
            _words(
                "il lo gli è sono io lui lei noi voi loro una uno che cosa come perché "
                "quando dove chi con per mio mia tuo tua non del della dei delle nel "
                "nella posso puoi ci sono c'è"
            ),
            "àèìòù",
        ),
        Language(
            "pt",
            "Portuguese",
            "Responda em português.",
            _words(
                "o os as é são eu ele ela nós vocês uma um que como porquê porque "
                "quando onde quem com para meu minha não do da dos das no na posso "
                "você está estão há muito"
            ),
            "ãõçâêô",
        ),
        Language(
            "nl",
            "Dutch",
            "Antwoord in het Nederlands.",
            _words(
                "de het een is zijn ik jij je wij we jullie zij niet wat hoe waarom "
                "wanneer waar wie met voor op van mijn jouw onze kan kunnen er dat dit "
                "deze ook maar naar"
            ),
            "ĳ",
        ),
    )
}
#: Words that mean the system message already says something about language.
_MENTIONS_LANGUAGE = re.compile(
    r"\{language\}|\b(?:language|languages|langue|sprache|idioma|lingua|taal|"
    + "|".join(
        re.escape(w)
        for lang in LANGUAGES.values()
        for w in (lang.name, lang.instruction.split()[-1].rstrip("."))
    )
    + r"|français|deutsch|español|italiano|português|nederlands|anglais)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)?", re.UNICODE)
#: A decision needs this many stopword hits and this lead over the runner-up.
MIN_HITS = 2
MIN_LEAD = 1.5
UNKNOWN_LANGUAGE = "the language of the user's message"
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}$")


def detect(text: str) -> str | None:
    """The language code of `text` (`fr`), or None when the evidence is thin or split."""
    words = [w.lower().replace("’", "'") for w in _WORD.findall(text)]
    if not words:
        return None
    scores: Counter[str] = Counter()
    for word in words:
        for lang in LANGUAGES.values():
            if word in lang.stopwords:
                scores[lang.code] += 1
    # French elisions (j'ai, qu'il, c'est, n'est, s'il) are French alone.
    scores["fr"] += sum(1 for w in words if w.startswith(("j'", "qu'", "c'", "n'", "s'")))
    lowered = text.lower()
    for lang in LANGUAGES.values():
        if lang.letters and any(c in lowered for c in lang.letters):
            scores[lang.code] += 1
    ranked = scores.most_common(2)
    if not ranked or ranked[0][1] < MIN_HITS:
        return None
    best, top = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0
    if runner_up and top < MIN_LEAD * runner_up:
        return None
    return best


def locale_language(locale: str | None) -> str | None:
    """The language code of a Slack locale (`fr-FR` → `fr`), if it is one we know."""
    if not locale:
        return None
    code = locale.replace("_", "-").split("-", 1)[0].lower()
    return code if code in LANGUAGES else None


def template_values(locale: str | None) -> dict[str, str]:
    """`{locale}` and `{language}` for the system-message template."""
    if locale and not _LOCALE.match(locale):
        locale = None  # only ever a short tag in the prompt, whatever arrived
    code = locale_language(locale)
    return {
        "locale": locale or "unknown",
        "language": LANGUAGES[code].name if code else UNKNOWN_LANGUAGE,
    }


def mentions_language(template: str) -> bool:
    """Whether an admin's system message already says which language to answer in."""
    return _MENTIONS_LANGUAGE.search(template) is not None


def answer_language(question: str, locale: str | None) -> tuple[str | None, bool]:
    """The code of the language to answer in, and whether it was detected (not guessed
    from the locale); (None, False) when neither says."""
    code = detect(question)
    if code is not None:
        return code, True
    return locale_language(locale), False


def language_rule(code: str, *, detected: bool) -> str:
    """The instruction added to the system message for answer language `code`."""
    lang = LANGUAGES[code]
    native = "" if code == "en" else lang.instruction + " "
    if not detected:
        return (
            f"{native}Answer in {lang.name}, the user's language, unless their message is "
            "written in another language; then answer in that one."
        )
    return f"{native}Answer in {lang.name}, the language of the user's message."


def with_language_rule(system: str, template: str, *, question: str, locale: str | None) -> str:
    """`system` (rendered from `template`) plus the language rule when one is needed.

    None is needed when the template already speaks about language, when the answer
    language is unknown, or when it is the language the system message is written in
    (English unless the detector says otherwise): the model answers in that one anyway,
    and every answer would otherwise pay for a sentence that changes nothing.
    """
    if mentions_language(template):
        return system
    code, detected = answer_language(question, locale)
    if code is None or code == (detect(template) or "en"):
        return system
    return f"{system}\n\n{language_rule(code, detected=detected)}"
