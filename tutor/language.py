"""Reply language: one of es, en, pt, fr, ca, it, de for a student message and its conversation.

Four signals, cheapest first: marks that only Spanish uses (¿ ¡ ñ), distinctive function words of
each language, py3langid and, for longer messages where those two disagree, langdetect (all
restricted to the supported languages). A conversation keeps its language: a short or ambiguous
message does not switch it, and a new conversation starts in Spanish (MODELS.md §5).
It does not translate anything, and never raises: any input gets a supported language.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

SUPPORTED = ("es", "en", "pt", "fr", "ca", "it", "de")
DEFAULT = "es"

# Words that, in a student's message, point to one supported language and (almost) no other.
# Words shared by two of them ("que", "como", "per", "con", "die", "was", "o") are left out on purpose:
# a word that votes for two languages only adds noise. Written without accents too, as students type.
_WORDS: dict[str, str] = {
    "es": "los las qué cómo cuál cuáles cual cuales hay están eso esto estos pero muy también tambien "
    "cuándo cuando dónde donde porqué hola gracias buenas buenos vale dime explícame explicame puedo "
    "puede tengo hace y q xq tmb yo eres soy hasta luego adiós adios usted mucho muchas ya ahora aquí "
    "aqui después despues bueno entonces sí mejor sirve ayúdame ayudame hazme dame pasa pasó quién "
    "quien hacer sin",
    "en": "the is are what what's whats how why which who does did can could would should of and to for "
    "with this that it you your my i i'm i've hello hey thanks thank bye cheers please explain tell "
    "give about there good morning cool got an be from not don't between difference want",
    "pt": "os não nao é são você voce vc do na um uma sem também tambem muito obrigado obrigada olá ola oi "
    "tchau valeu tudo bem quais quem onde pra pro isso isto esse essa ele ela eu minha ao pelo pela "
    "ainda já então aí diferença faz fazer dá tenho há quero estou fico faço preciso vocês",
    "fr": "du est c'est qu'est quoi comment pourquoi quel quelle quels quelles je vous nous et dans avec "
    "pour pas ce cette ces ton ta bonjour salut merci revoir au aux ça oui très aussi une d'un d'une "
    "moi toi fait faire peut peux sont qu'un sert j'ai",
    "ca": "és què els dels amb perquè quin quina quins quines són també molt moltes gràcies gracies adéu "
    "adeu doncs aquest aquesta això aixo mateix jo meva teu teva seva fins després ets sóc puc pots "
    "fer diferència serveix m'expliques vull estic fent ara fes digues dona'm tinc vols",
    "it": "gli della delle dei degli è sono che cos'è perché quale quali chi dove nel nella sul ti ciao "
    "grazie buongiorno arrivederci molto anche questo questa quello ho hai mio tuo fammi spiegami "
    "differenza modello voglio sto stai dimmi dammi di",
    "de": "der den dem ist sind und ein eine einen wie warum welche welcher wer wo ich du mir mich dich "
    "nicht mit für von zu auf kann kannst bitte danke hallo tschüss guten tag gibt erkläre erklär "
    "zwischen unterschied auch oder aber mein dein vielen dank",
}
# Letters or spellings that only one supported language uses.
_MARKS = {"pt": re.compile(r"[ãõ]"), "de": re.compile(r"[ßäöü]"), "ca": re.compile(r"l·l|l\.l")}
# Whole messages too short for the lists: greetings that differ by one word across languages.
_PHRASES = {
    "hi": "en",
    "bon dia": "ca",
    "bom dia": "pt",
    "bona tarda": "ca",
    "boa tarde": "pt",
    "hi there": "en",
}
_LEXICON: dict[str, str] = {w: lang for lang, words in _WORDS.items() for w in words.split()}
_TOKEN = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
_SPANISH_MARKS = re.compile(r"[¿¡ñÑ]")
_LATIN_LETTER = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ]")
_SWITCH_WORDS = 4  # a message this long, and confident, may change the conversation's language
_CONFIDENT = 0.8


class LanguageDetector:
    """Rules + word lists + py3langid + langdetect, with the conversation's language as the fallback."""

    def __init__(self) -> None:
        from langdetect import DetectorFactory
        from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

        DetectorFactory.seed = 0  # langdetect is random unless seeded (MODELS.md §5)
        self._langid = LanguageIdentifier.from_modelpath(os.path.join(MODEL_DIR, MODEL_FILE), norm_probs=True)
        self._langid.set_languages(list(SUPPORTED))  # returns None: not chainable

    def detect(self, text: str, history: Sequence[Mapping[str, Any]] = ()) -> str:
        """The language to reply in: this message's, or the conversation's when the message is unclear."""
        current = DEFAULT
        for turn in history:  # replay the student's turns: the conversation's language as it was
            if turn.get("role") == "user" and isinstance(turn.get("content"), str):
                current = self._next(turn["content"], current)
        return self._next(text, current)

    def _next(self, text: str, current: str) -> str:
        text = text[:2000]  # a bounded window: the opening of a long paste says enough
        if not _LATIN_LETTER.search(text):  # empty, emoji, digits, or a script we do not support
            return current
        if _SPANISH_MARKS.search(text):
            return "es"
        words = [w.lower().replace("’", "'") for w in _TOKEN.findall(text)]
        phrase = _PHRASES.get(" ".join(words))
        if phrase:
            return phrase
        votes = {lang: 0 for lang in SUPPORTED}
        for word in words:
            if word in _LEXICON:
                votes[_LEXICON[word]] += 1
        for lang, mark in _MARKS.items():
            if mark.search(text.lower()):
                votes[lang] += 2
        probs = self._langid_probs(text)
        if len(words) < _SWITCH_WORDS:
            # Short: only the word lists may switch ("thanks", "c'est quoi", "o que é"), and only when
            # one language leads them; otherwise the conversation keeps its language ("ok", "BERT?").
            top = max(votes.values())
            leaders = [lang for lang in SUPPORTED if votes[lang] == top]
            if top == 0 or current in leaders:
                return current
            return leaders[0] if len(leaders) == 1 else max(leaders, key=lambda lang: probs[lang])
        best = max(SUPPORTED, key=lambda lang: votes[lang] + 2 * probs[lang])
        if best == current:
            return current
        lead = votes[best] - votes[current]
        # Confident enough to switch: the statistical model is sure, or it leans that way and the word
        # lists agree, or the word lists clearly lead and langdetect gives the same answer.
        if (probs[best] >= _CONFIDENT and lead >= 0) or (probs[best] >= 0.5 and lead >= 1):
            return best
        if lead >= 2 and self._langdetect(text) == best:
            return best
        return current

    def _langid_probs(self, text: str) -> dict[str, float]:
        probs = {lang: 0.0 for lang in SUPPORTED}
        for lang, prob in self._langid.rank(text):
            if lang in probs:
                probs[lang] = float(prob)
        return probs

    @staticmethod
    def _langdetect(text: str) -> str | None:
        from langdetect import detect_langs
        from langdetect.lang_detect_exception import LangDetectException

        try:
            ranked = detect_langs(text)
        except LangDetectException:  # raised on "", "?", digits, emoji
            return None
        return next((r.lang for r in ranked if r.lang in SUPPORTED), None)
