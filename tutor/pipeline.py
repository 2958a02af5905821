"""The tutor: one message in, a cited and verified answer out. Read it top to bottom.

`Tutor.plan()` is cheap and deterministic: reply language, gate, search query, passages, and the
exact prompt the model will see (or a reply decided without the model: a refusal, a redirect, a
hint). `Tutor.answer()` is the only part that runs the model: it shows the course's own sentences at
once, then replaces them with the generated answer only if every kept sentence is verified against
the passages. It does not render widgets (app/ui.py) or parse arguments (cli.py).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from tutor.chat import ChatModel, Prompt, fit_prompt
from tutor.config import Settings
from tutor.errors import BadQuery, EngineCrashed, TutorError
from tutor.extract import Extractor
from tutor.meaning import piece_entropies
from tutor.prompts import PromptLibrary
from tutor.retrieve import Retriever, search_query
from tutor.text import ASKS_FOR_ANSWER
from tutor.types import ChatPrompt, GateDecision, Message, Passage, TextPrompt, Turn
from tutor.verify import Entropy, Verifier

if TYPE_CHECKING:
    from tutor.index import Index
    from tutor.practice import LazyPractice

log = logging.getLogger("tutor")

Mode = Literal["explain", "socratic", "practice"]
MODES: tuple[str, ...] = ("explain", "socratic", "practice")


class Detector(Protocol):
    def detect(self, text: str, history: Sequence[Turn]) -> str: ...


class Gatekeeper(Protocol):
    def check(self, text: str, language: str, history: Sequence[Turn]) -> GateDecision: ...


@dataclass(frozen=True)
class Plan:
    question: str
    history: tuple[Turn, ...]
    mode: str
    language: str
    gate: GateDecision
    query: str = ""  # what was searched: the question, made self-contained with the history
    passages: tuple[Passage, ...] = ()
    prompt: Prompt | None = None  # exactly what the model will see; None when no model runs
    reply: str | None = None  # a reply decided without the model (refusal, redirect, hint)
    kind: str = "answer"  # answer | refusal | redirect | chitchat | not_in_course | hint | no_passages
    step: int = 0  # socratic hint ladder: 1, 2, then 3 = the full answer
    quiz: dict[str, Any] = field(default_factory=dict)  # practice: {pending, result, review, number} (tutor.practice)
    timings: dict[str, float] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)  # names the answer for feedback and analytics


@dataclass(frozen=True)
class Answer:
    text: str  # the tutor's own prose: verified generated text, or the extractive answer
    plan: Plan
    verified: bool = False
    fallback: Literal["none", "extractive"] = "none"
    removed: tuple[tuple[str, str], ...] = ()  # generated sentences dropped, and why
    generated: str = ""  # the raw model output, for logs and evaluation (never shown)
    notice: str = ""  # e.g. why the answer is quoted from the course
    general: str = ""  # a capable model's answer to what the course does not cover, shown marked as such
    quoted: tuple[tuple[str, str], ...] = ()  # extractive: (section id, sentence) as shown, the best first
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def citations(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.section_id for p in self.plan.passages))

    @property
    def meta(self) -> dict[str, Any]:
        """What the conversation keeps with this reply (the socratic ladder reads it back)."""
        plan = self.plan
        return {"id": plan.id, "language": plan.language, "mode": plan.mode, "kind": plan.kind, "step": plan.step,
                "question": plan.query or plan.question, "citations": list(self.citations),
                **({"quiz": plan.quiz} if plan.quiz else {})}  # fmt: skip


@dataclass(frozen=True)
class Reply:
    """A streamed update: the visible text so far; the last one is final and carries the Answer."""

    text: str
    final: bool = False
    answer: Answer | None = None


class Tutor:
    def __init__(
        self,
        *,
        settings: Settings,
        prompts: PromptLibrary,
        detector: Detector,
        gate: Gatekeeper,
        retriever: Retriever,
        verifier: Verifier,
        extractor: Extractor,
        model: ChatModel | None,
    ) -> None:
        self.settings, self.prompts, self.detector, self.gate = settings, prompts, detector, gate
        self.retriever, self.verifier, self.extractor, self.model = retriever, verifier, extractor, model
        self.stopping = threading.Event()  # set when the app shuts down: every generation ends at its next token
        self._practice = self._practice_factory(retriever.index)

    def use_index(self, index: Index) -> None:
        """Answer from another index from the next message on (after a re-index), without a restart."""
        from tutor.gate import Gate

        self.gate = Gate.load(index, self.settings)
        self.retriever = Retriever(index, self.settings)
        self.verifier = Verifier(
            index, detect_language=self.verifier.detect_language, precision=self.settings.verifier_precision
        )
        self.extractor = Extractor(index, self.prompts)
        self._practice = self._practice_factory(index)

    def with_prompts(self, prompts: PromptLibrary) -> Tutor:
        """A tutor sharing everything but its templates: the instructor panel previews an unsaved edit."""
        import copy

        trial = copy.copy(self)
        trial.prompts, trial.extractor = prompts, Extractor(self.retriever.index, prompts)
        return trial

    def plan(self, message: str, history: Sequence[Any] = (), mode: str = "explain",
             mastery: dict[str, Any] | None = None) -> Plan:  # fmt: skip
        """Decide everything that does not need the model; a refusal is a value, not an exception.

        Args:
            mastery: practice mode only: the mastery dict kept from earlier sessions (practice.mastery()).
        """
        started = time.perf_counter()
        if not isinstance(message, str):
            raise BadQuery(f"El mensaje debe ser texto (llegó {type(message).__name__}): escriba una pregunta.")
        turns = clean_history(history)
        mode = mode if mode in MODES else "explain"
        language = self.detector.detect(message, turns)
        decision = self.gate.check(message, language, turns)
        timings = {"gate_ms": _ms(started)}
        plan = Plan(message, turns, mode, language, decision, timings=timings)
        if mode == "practice" and decision.label != "unsafe":
            # An answer to the pending question ("BERT", "verdadero") is graded, never sent off topic.
            from tutor.practice import pending

            metas = [t.get("meta") or {} for t in turns if t["role"] == "assistant"]
            if pending(metas) is not None or decision.reason != "other_subject":
                return self._practice_plan(plan, mastery)
        if decision.label != "on_topic" or decision.reason == "related":
            return self._without_course(plan)

        started = time.perf_counter()
        ladder = _socratic_step(turns, message) if mode == "socratic" else 0
        previous = turns[-1].get("meta", {}).get("question") if ladder > 1 else None
        query = previous or search_query(message, turns)
        passages = tuple(self.retriever.search(query, self.settings.top_k, question=None if previous else message))
        timings["retrieve_ms"] = _ms(started)
        plan = replace(plan, query=query, passages=passages, step=ladder)
        if not passages:
            return replace(plan, kind="no_passages", reply=self.prompts.reply("no_passages", language))
        if ladder in (1, 2):
            return replace(plan, kind="hint", reply=self._hint(plan))
        if self.model is None:
            return plan
        return replace(plan, prompt=self._prompt(plan))

    def answer(self, plan: Plan, cancel: threading.Event | None = None) -> Iterator[Reply]:
        """Stream the reply: the course's sentences first, then the verified answer (or keep them).

        Setting `cancel` stops generation at the next token and frees the model; the course's
        sentences stay the answer."""
        # Timings count from the message's arrival: planning (gate, retrieval) is part of the wait.
        started = time.perf_counter() - sum(plan.timings.values()) / 1000
        if plan.reply is not None:
            answer = Answer(plan.reply, plan, verified=True)
            if plan.prompt is not None:  # not in the course, and a capable model may add a general answer
                yield Reply(self.render(answer))
                answer = self._general(answer, cancel)
            answer = replace(answer, timings={**plan.timings, "total_ms": _ms(started)})
            yield Reply(self.render(answer), final=True, answer=answer)
            return
        extract = self.extractor.answer(plan.query or plan.question, plan.passages, plan.language)
        fallback = Answer(extract.text, plan, fallback="extractive", quoted=extract.sentences)
        yield Reply(self.render(fallback))  # first visible text: the course itself, at once
        timings = dict(plan.timings, first_visible_ms=_ms(started))
        if plan.prompt is None or self.model is None:
            notice = ""
        else:
            generated, ttft, notice, entropy = self._generate(plan.prompt, cancel, plan.language)
            if ttft is not None:
                timings["ttft_ms"] = ttft
            if generated:
                verdict = self.verifier.check(
                    generated, question=plan.question, passages=plan.passages, language=plan.language,
                    prompt=_prompt_text(plan.prompt), entropy=entropy, writer=getattr(self.model, "writer", None),
                )  # fmt: skip
                if verdict.verified:
                    answer = Answer(verdict.text, plan, verified=True, removed=verdict.removed,
                                    generated=generated, timings=timings)  # fmt: skip
                    answer = replace(answer, timings={**timings, "total_ms": _ms(started)})
                    yield Reply(self.render(answer), final=True, answer=answer)
                    return
                fallback = replace(fallback, removed=verdict.removed, generated=generated)
                if verdict.unnamed:  # say so: the passages shown are the nearest, not about that term
                    notice = notice or self.prompts.reply("not_named", plan.language, term=verdict.unnamed[0])
            notice = notice or self.prompts.reply("fallback_notice", plan.language)
        fallback = replace(fallback, notice=notice, timings={**timings, "total_ms": _ms(started)})
        yield Reply(self.render(fallback), final=True, answer=fallback)

    def render(self, answer: Answer) -> str:
        """The visible reply: the answer, a check question, then the sources with their titles."""
        plan = answer.plan
        parts = [inert(answer.text)]  # course text and model text alike: shown, never executed
        if answer.notice:
            parts.append(f"_{inert(answer.notice)}_")
        if answer.general:
            heading = self.prompts.reply("general_heading", plan.language)
            parts.append(f"**{inert(heading)}**\n\n{inert(answer.general)}")
        if plan.kind == "answer" and plan.mode == "explain" and plan.passages:
            # About what the student read first: the section of the first quote, else the top passage.
            lead = answer.quoted[0][0] if answer.quoted else None
            top = next((p for p in plan.passages if p.section_id == lead), plan.passages[0])
            parts.append(self.prompts.reply("check_question", plan.language,
                                            term=inert(top.chunk.section_title), section=top.section_id))  # fmt: skip
        if plan.passages and plan.kind in ("answer", "hint"):
            heading = self.prompts.reply("sources_heading", plan.language)
            # Each source as an inline code span: a chip in the browser, plain in a terminal.
            sources = " ".join(f"`{p.citation().replace('`', chr(39))}`" for p in plan.passages)
            parts.append(f"**{heading}**\n{sources}")
            # The passages themselves, folded: the student can always read what the answer rests on.
            excerpts = "\n\n".join(
                f"> **§{inert(p.section_id)}** " + "\n> ".join(inert(p.chunk.text).splitlines()) for p in plan.passages
            )
            summary = self.prompts.reply("excerpts_heading", plan.language)
            parts.append(f"<details><summary>{summary}</summary>\n\n{excerpts}\n\n</details>")
        return "\n\n".join(parts)

    def _practice_plan(self, plan: Plan, mastery: dict[str, Any] | None) -> Plan:
        """Practice: grade the answer to the pending question, then ask the next one (tutor.practice)."""
        started = time.perf_counter()

        def search(text: str) -> str | None:
            if plan.gate.label != "on_topic":
                return None
            found = self.retriever.search(text, 1)
            return found[0].section_id if found else None

        turn = self._practice.get().step(plan.question, plan.history, plan.language, search=search, previous=mastery)
        timings = {**plan.timings, "practice_ms": _ms(started)}
        return replace(plan, kind=turn.kind, reply=turn.text, quiz=turn.quiz, timings=timings)

    def _practice_factory(self, index: Index) -> LazyPractice:
        from tutor.practice import LazyPractice, Practice

        settings, prompts = self.settings, self.prompts
        return LazyPractice(lambda: Practice.load(index, settings.data_dir, settings.knowledge_dir, prompts))

    def _without_course(self, plan: Plan) -> Plan:
        """Refusals, redirects and chitchat: a templated reply in the student's language."""
        decision = plan.gate
        kind = {"unsafe": "refusal", "off_topic": "redirect"}.get(decision.label, "not_in_course")
        if decision.reason == "chitchat":
            kind = "chitchat"
        nearest = self.retriever.search(plan.question, 2) if kind in ("redirect", "not_in_course") else []
        sections = " / ".join(p.citation() for p in nearest) or "§1"
        template = "not_in_course" if kind == "not_in_course" else decision.reason
        try:
            text = self.prompts.reply(template, plan.language, sections=sections)
        except TutorError:
            text = self.prompts.reply(decision.label, plan.language, sections=sections)
        plan = replace(plan, kind=kind, reply=text, passages=tuple(nearest) if kind == "not_in_course" else ())
        if kind == "not_in_course" and self.model is not None and self._general_answers():
            language_name = self.prompts.reply("language_name", plan.language)
            question = self.prompts.render("chat/general", question=plan.question, language_name=language_name)
            messages = (self._system(language_name), Message("user", question))
            prompt = ChatPrompt(messages, stop=tuple(self.settings.stop))
            fitted = fit_prompt(self.model, lambda _: prompt, (), reply_tokens=self.settings.max_tokens)
            plan = replace(plan, prompt=fitted.prompt)
        return plan

    def _system(self, language_name: str) -> Message:
        """The persona and rules every chat-model prompt opens with."""
        return Message("system", self.prompts.render("chat/system", language_name=language_name))

    def _general_answers(self) -> bool:
        """General answers outside the course: asked for, and from a configured chat model (never the
        packaged Gemma, a base model that invents)."""
        model = self.model
        if not self.settings.general_answers or model is None:
            return False
        return model.style == "chat" and not model.info().packaged

    def _general(self, answer: Answer, cancel: threading.Event | None) -> Answer:
        """The model's general answer, kept only when it is a real reply in the student's language."""
        plan = answer.plan
        assert plan.prompt is not None
        generated, ttft, notice, _ = self._generate(plan.prompt, cancel, plan.language)
        rejected = self.verifier.rejected(generated, question=plan.question, language=plan.language,
                                          prompt=_prompt_text(plan.prompt))  # fmt: skip
        if rejected:
            log.info("general answer not shown (%s)", notice or rejected)
            return replace(answer, generated=generated, removed=((generated, rejected),) if generated else ())
        return replace(answer, general=generated.strip(), generated=generated)

    def _prompt(self, plan: Plan) -> Prompt:
        """The model's prompt, fitted to its context: older history goes first, then weaker passages."""
        assert self.model is not None
        language_name = self.prompts.reply("language_name", plan.language)
        if self.model.style == "completion":
            # Base models (the packaged Gemma) do best with one passage and one worked example (MODELS.md).
            template = self.prompts.get("completion/answer")
            best = plan.passages[0]

            def render_text(_: Sequence[object]) -> Prompt:
                return TextPrompt(
                    self.prompts.render(
                        "completion/answer",
                        context=_context([best]),
                        question=plan.question,
                        question_label=self.prompts.reply("question_label", plan.language),
                        answer_label=self.prompts.reply("answer_label", plan.language),
                    ),  # fmt: skip
                    stop=tuple(template.meta.get("stop", ())) + tuple(self.settings.stop),
                )

            return fit_prompt(self.model, render_text, (), reply_tokens=self.settings.max_tokens).prompt
        system = self._system(language_name)
        history = [Message(t["role"], _trim(t["content"])) for t in plan.history]
        passages = list(plan.passages)
        droppable: list[tuple[str, Any]] = [("turn", m) for m in history] + [("passage", p) for p in reversed(passages)]
        name = "chat/socratic" if plan.mode == "socratic" and plan.step == 0 else "chat/answer"

        def render_chat(kept: Sequence[tuple[str, Any]]) -> Prompt:
            turns = tuple(m for kind, m in kept if kind == "turn")
            kept_passages = [p for p in passages if ("passage", p) in kept]
            question = self.prompts.render(name, context=_context(kept_passages), question=plan.question,
                                           language_name=language_name)  # fmt: skip
            return ChatPrompt((system, *turns, Message("user", question)), stop=tuple(self.settings.stop))

        return fit_prompt(self.model, render_chat, droppable, reply_tokens=self.settings.max_tokens).prompt

    def _generate(
        self, prompt: Prompt, cancel: threading.Event | None = None, language: str = "es"
    ) -> tuple[str, float | None, str, Entropy | None]:
        """(text, ms to first token, notice, its sentences' token entropies when the model gave them).
        A failing model never takes the answer down with it."""
        assert self.model is not None
        started, ttft, pieces = time.perf_counter(), None, []
        stopped = _stopper(cancel, self.stopping)
        if stopped():  # stopped while waiting for the model
            return "", None, self.prompts.reply("stopped", language), None
        stream = self.model.stream(prompt, max_tokens=self.settings.max_tokens)
        try:
            for delta in stream:
                if ttft is None:
                    ttft = _ms(started)
                pieces.append(delta)
                if stopped():
                    return "", ttft, self.prompts.reply("stopped", language), None
        except EngineCrashed as exc:  # the engine is being restarted: say so in the student's language
            log.warning("generation failed: %s", exc)
            return "", ttft, self.prompts.reply("engine_crashed", language), None
        except TutorError as exc:
            log.warning("generation failed: %s", exc)
            return "", ttft, str(exc), None
        except Exception:
            log.exception("generation failed")
            return "", ttft, self.prompts.reply("error", language), None
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
        return "".join(pieces), ttft, "", piece_entropies(pieces)

    def _hint(self, plan: Plan) -> str:
        top = plan.passages[0]
        if plan.step == 1:
            terms = (
                ", ".join(_key_terms(top.chunk.text, self.retriever.index.tokens(plan.question)))
                or top.chunk.section_title
            )
            return self.prompts.reply("socratic_hint1", plan.language, section=top.section_id,
                                      title=top.chunk.section_title, terms=terms)  # fmt: skip
        extract = self.extractor.answer(plan.query, plan.passages[:1], plan.language)
        hint = extract.sentences[0][1] if extract.sentences else top.chunk.text.split(".")[0]
        words = hint.split()
        partial = " ".join(words[: max(6, len(words) // 2)]) + "…"
        return self.prompts.reply("socratic_hint2", plan.language, section=top.section_id, hint=partial)


def clean_history(history: Sequence[Any]) -> tuple[Turn, ...]:
    """Keep well-formed turns only ({role: user|assistant, content: str}); anything else is dropped."""
    turns: list[Turn] = []
    for turn in history if isinstance(history, (list, tuple)) else ():
        if (
            isinstance(turn, dict)
            and turn.get("role") in ("user", "assistant")
            and isinstance(turn.get("content"), str)
        ):
            meta = turn.get("meta") if isinstance(turn.get("meta"), dict) else {}
            turns.append({"role": turn["role"], "content": turn["content"], "meta": meta})
    return tuple(turns)


def _socratic_step(turns: Sequence[Turn], message: str) -> int:
    """1 for a new question; 2 after one hint; 3 (the full answer) after two, or when asked for it."""
    last = turns[-1].get("meta", {}) if turns else {}
    if last.get("mode") != "socratic" or last.get("kind") != "hint":
        return 1
    return 3 if last.get("step", 1) >= 2 or ASKS_FOR_ANSWER.search(message) else last.get("step", 1) + 1


def _key_terms(text: str, question_tokens: Sequence[str]) -> list[str]:
    """Acronyms and names of the passage the question does not already mention: what to look for."""
    seen: list[str] = []
    for term in re.findall(r"\b[A-Z][A-Za-z0-9-]*[A-Z0-9][A-Za-z0-9-]*\b", text):
        if term.lower() not in question_tokens and term not in seen:
            seen.append(term)
    return seen[:3]


def inert(text: str) -> str:
    """Text shown as Markdown that cannot become HTML, an image or a link: a knowledge file or a model
    may contain `<script>`, `![x](http://…)` or `[x](javascript:…)`. Rendered, it reads the same."""
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("<", "&lt;")


def _context(passages: Sequence[Passage]) -> str:
    return "\n\n".join(f"[{p.citation()}]\n{p.chunk.text}" for p in passages)


def _trim(text: str, words: int = 80) -> str:
    parts = text.split()
    return text if len(parts) <= words else " ".join(parts[:words]) + " …"


def _prompt_text(prompt: Prompt) -> str:
    if isinstance(prompt, TextPrompt):
        return prompt.text
    return "\n".join(m.content for m in prompt.messages)


def _stopper(cancel: threading.Event | None, stopping: threading.Event) -> Callable[[], bool]:
    """True once the student pressed stop or the app is shutting down."""
    events = (stopping,) if cancel is None else (cancel, stopping)
    return lambda: any(event.is_set() for event in events)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def build_tutor(settings: Settings, *, model: str = "auto", index: Index | None = None) -> tuple[Tutor, list[str]]:
    """The tutor with the implementations the settings name, and start-up notices for the user.

    Args:
        model: "auto" (TUTOR_GGUF, a server, or the packaged Gemma), "echo" (UI work), "none" (extractive only).
    """

    from tutor.embed import load_embedder
    from tutor.gate import Gate
    from tutor.index import Index
    from tutor.language import LanguageDetector

    notices: list[str] = []
    prompts = PromptLibrary(settings.prompts_dir)
    notices += prompts.check()
    if index is None:
        index = Index.open(settings, load_embedder(settings))
    detector = LanguageDetector()
    chat_model: ChatModel | None = None
    if model == "echo":
        from tutor.chat import EchoModel

        chat_model = EchoModel()
    elif model != "none":
        from tutor.models import load_chat_model

        try:
            chat_model = load_chat_model(settings)
        except TutorError as exc:
            notices.append(f"{exc} El tutor responde citando el curso, sin modelo generativo.")
    tutor = Tutor(
        settings=settings,
        prompts=prompts,
        detector=detector,
        gate=Gate.load(index, settings),
        retriever=Retriever(index, settings),
        verifier=Verifier(
            index, detect_language=lambda text: detector.detect(text, ()), precision=settings.verifier_precision
        ),
        extractor=Extractor(index, prompts),
        model=chat_model,
    )
    return tutor, notices
