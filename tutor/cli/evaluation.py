"""`tutor eval`: retrieval, reply language, gate and answer figures on a dataset, or the verifier on labelled claims."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tutor.cli.common import open_index, open_retriever

if TYPE_CHECKING:
    from tutor.config import Settings
    from tutor.evaluate import EvalItem
    from tutor.index import Index


def add_parsers(sub: Any) -> None:
    """eval: added to the CLI's subparsers."""
    p = sub.add_parser("eval", help="mide la recuperación sobre un conjunto JSONL, o el verificador (--claims)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--dataset", type=Path)
    which.add_argument("--claims", type=Path, help="frases etiquetadas (eval/claims.jsonl): precisión y recall "
                       "del verificador por parte y por modelo")  # fmt: skip
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="un objeto JSON en stdout")
    p.add_argument("--generate", action="store_true", help="también responde cada ítem y mide las respuestas")
    p.add_argument("--limit", type=int, default=None,
                   help="con --generate: solo N ítems, repartidos por todo el conjunto")  # fmt: skip
    p.add_argument("--model", choices=["auto", "echo", "none"], default="auto", help="con --generate")
    p.add_argument(
        "--verifier",
        choices=["auto", "lexical"],
        default="auto",
        help="con --claims: la comprobación de sentido del embebedor si la hay (auto), o las reglas léxicas",
    )
    _token_arguments(p)
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("verifier", help="'tutor verifier train': ajusta la comprobación de sentido del verificador")
    p.add_argument("action", choices=["train"])
    p.add_argument("--claims", type=Path, default=Path("eval/claims.jsonl"), help="frases etiquetadas (parte tune)")
    p.add_argument("--out", type=Path, help="archivo del modelo (por defecto, el del paquete para este embebedor); "
                   "el que pondera la entropía va al lado, «+tokens»")  # fmt: skip
    p.add_argument("--precision", type=float, default=None,
                   help="precisión a alcanzar en validación cruzada (por defecto 0.97, la del issue 18)")  # fmt: skip
    _token_arguments(p)
    p.set_defaults(run=cmd_verifier)


def _token_arguments(p: Any) -> None:
    p.add_argument("--tokens", type=Path, help="entropías de los tokens de cada frase (tools/claims_token_stats.py; "
                   "por defecto CLAIMS-tokens.jsonl, junto a --claims, si existe)")  # fmt: skip
    p.add_argument("--no-tokens", action="store_true", help="sin entropías: solo la comprobación sin ellas")


def _entropies(args: argparse.Namespace) -> dict[str, float]:
    """The claims' recorded token entropies that --tokens / --no-tokens ask for ({} for none)."""
    from tutor.claims import load_entropies

    if args.no_tokens:
        return {}
    path = args.tokens or args.claims.with_name(f"{args.claims.stem}-tokens.jsonl")
    if args.tokens and not path.is_file():
        print(f"{path}: no existe; se sigue sin entropías.", file=sys.stderr)
    return load_entropies(path)


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from tutor.evaluate import load_dataset, retrieval_scores, spread
    from tutor.retrieve import search_query

    if args.claims:
        return _claims_eval(args, settings)
    dataset = load_dataset(args.dataset)
    for error in dataset.errors:
        print(f"{args.dataset}: {error}", file=sys.stderr)
    retriever = open_retriever(settings)
    depth = max(args.k, 5)

    def ranked(item: EvalItem) -> list[str]:
        query = search_query(item.question, item.history)
        return [p.section_id for p in retriever.search(query, depth, question=item.question)]

    result = {"n": len(dataset.items), "malformed": len(dataset.errors), "k": args.k}
    result["retrieval"] = retrieval_scores(dataset.items, ranked)
    result.update(_gate_eval(dataset.items, retriever.index, settings))
    if args.generate:
        items = spread(dataset.items, args.limit)
        result["answers"] = _answer_eval(items, retriever.index, settings, args.model)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        _print_eval(result)
    return 1 if dataset.errors else 0


def _claims_eval(args: argparse.Namespace, settings: Settings) -> int:
    """`tutor eval --claims FILE`: re-run today's verifier on the stored answers (index and embedder, no model)."""
    from tutor.claims import claims_report, load_claims, summary, verifier_decide
    from tutor.language import LanguageDetector
    from tutor.verify import Verifier

    claims = load_claims(args.claims)
    for error in claims.errors:
        print(f"{args.claims}: {error}", file=sys.stderr)
    index = open_index(settings)
    detector = LanguageDetector()
    meaning: Literal["auto"] | None = None if args.verifier == "lexical" else "auto"
    verifier = Verifier(
        index, detect_language=lambda t: detector.detect(t, ()), meaning=meaning, precision=settings.verifier_precision
    )
    entropies = _entropies(args) if verifier.token_meaning is not None else {}
    decide, stale = verifier_decide(verifier, index, entropies)
    name = "lexical" if verifier.meaning is None else f"meaning ({_thresholds(verifier.meaning)})"
    if entropies and verifier.token_meaning is not None:
        name += f"; con entropía de tokens donde la hay ({_thresholds(verifier.token_meaning)})"
    result = claims_report(claims.items, decide, verifier=f"tutor.verify.Verifier: {name}")
    result.update(malformed=len(claims.errors), stale_passages=stale(),
                  with_entropy=sum(c.id in entropies for c in claims.items))  # fmt: skip
    print(json.dumps({"claims": result}, ensure_ascii=False) if args.json else summary(result))
    return 1 if claims.errors else 0


def _thresholds(model: Any) -> str:
    """ "umbral 0.85; qwen2.5-coder-1.5b 0.75": the pooled threshold, then each writer's own."""
    return "; ".join([f"umbral {model.threshold}", *(f"{w} {t}" for w, t in model.thresholds.items())])


def cmd_verifier(args: argparse.Namespace, settings: Settings) -> int:
    """`tutor verifier train`: fit the meaning check on the claims' tuning part, for the configured embedder."""
    from tutor.claims import labelled_evidence, load_claims
    from tutor.language import LanguageDetector
    from tutor.meaning import PRECISION, TOKEN_FEATURES, model_path
    from tutor.meaning_fit import fit
    from tutor.verify import Verifier

    precision = PRECISION if args.precision is None else args.precision
    if not 0 < precision <= 1:  # before any work: the evidence takes a while to measure
        print(f"--precision {precision}: debe estar entre 0 y 1.", file=sys.stderr)
        return 2
    claims = load_claims(args.claims)
    for error in claims.errors:
        print(f"{args.claims}: {error}", file=sys.stderr)
    tune = [c for c in claims.items if c.split == "tune"]  # the held-apart part is never seen here
    if not tune:
        print(f"{args.claims}: no hay frases de la parte «tune» con las que ajustar.", file=sys.stderr)
        return 1
    index = open_index(settings)
    detector = LanguageDetector()
    lexical = Verifier(index, detect_language=lambda t: detector.detect(t, ()), meaning=None)
    entropies = _entropies(args)
    rows, unmatched = labelled_evidence(tune, lexical, index, entropies)
    out = args.out or model_path(index.embedder.name)
    print(f"{len(rows)} frases de la parte tune ({unmatched} no coinciden con la división en frases de hoy).")
    share = lexical.min_kept_share
    fits = [(fit(rows, index.embedder.name, min_kept_share=share, precision=precision), out)]
    if any(r.evidence.entropy_mean is not None for r in rows):
        tokens = fit(rows, index.embedder.name, min_kept_share=share, precision=precision, features=TOKEN_FEATURES)
        fits.append((tokens, out.with_name(f"{out.stem}+tokens{out.suffix}")))
    else:
        print("Sin entropías de tokens (--tokens): solo el modelo sin ellas.")
    for model, path in fits:
        model.save(path)
        figures = model.meta["cross_validation"]
        which = "con entropía de tokens" if model.tokens else "sin entropía"
        print(f"{which}: {model.meta['examples']} frases, umbral {model.threshold}. Validación cruzada por "
              f"pregunta: sentido {figures['meaning']}, reglas léxicas {figures['lexical']}.")  # fmt: skip
        for writer, row in figures["by_writer"].items():
            print(f"  {writer}: {row['examples']} frases, umbral {row['threshold']}, {row['meaning']}")
        print(f"  Guardado en {path}")
    return 1 if claims.errors else 0


def _gate_eval(items: Sequence[EvalItem], index: Index, settings: Settings) -> dict[str, Any]:
    """The "language" and "gate" keys of `tutor eval` (issue 4), measured with the shipped gate."""
    from tutor.evaluate import gate_scores, language_scores
    from tutor.gate import Gate
    from tutor.language import LanguageDetector

    detector, gate = LanguageDetector(), Gate.load(index, settings)

    def decide(item: EvalItem) -> tuple[str, str]:
        decision = gate.check(item.question, detector.detect(item.question, item.history), item.history)
        return decision.label, decision.reason

    return {
        "language": language_scores(items, lambda item: detector.detect(item.question, item.history)),
        "gate": gate_scores(items, decide),
    }


def _answer_eval(items: Sequence[EvalItem], index: Index, settings: Settings, model: str) -> dict[str, Any]:
    """The "answers" key of `tutor eval --generate` (issue 5): every item answered with its history."""
    from tqdm import tqdm

    from tutor.evaluate import answer_scores
    from tutor.language import LanguageDetector
    from tutor.pipeline import build_tutor

    tutor, notices = build_tutor(settings, model=model, index=index)
    for notice in notices:
        print(f"Aviso: {notice}", file=sys.stderr)
    rows = []
    for item in tqdm(items, desc="Respondiendo", unit="pregunta", disable=None):
        final = None
        for reply in tutor.answer(tutor.plan(item.question, list(item.history))):
            final = reply
        assert final is not None, "an answer always ends with a final reply"
        rows.append((item, final.answer, final.text))
    detector = LanguageDetector()
    scores = answer_scores(rows, lambda text: detector.detect(text, ()))
    # Which set answered: figures from two runs are compared side by side (README, "Models").
    generator = tutor.model.info().name if tutor.model is not None else "ninguno (solo citas del curso)"
    return {"generator": generator, "embedder": index.embedder.name, **scores}


def _print_eval(result: dict[str, Any]) -> None:
    r = result["retrieval"]
    print(f"{result['n']} ítems ({result['malformed']} mal formados); recuperación sobre {r['n']}:")
    print(
        f"  hit@1 {r['hit@1']}  hit@3 {r['hit@3']}  hit@5 {r['hit@5']}  MRR {r['mrr']}  "
        f"recall@5 multi-sección {r['all_sections_recall@5']}"
    )
    for group in ("by_language", "by_kind"):
        for name, g in r[group].items():
            print(f"  {name:<14} n={g['n']:<3} hit@1 {g['hit@1']}  hit@5 {g['hit@5']}  MRR {g['mrr']}")
    if r["topic_change"]["n"]:
        t = r["topic_change"]
        print(f"  cambio de tema n={t['n']:<3} hit@1 {t['hit@1']}  hit@5 {t['hit@5']}  MRR {t['mrr']}")
    if r["misses@5"]:
        print("  fallos en el top 5: " + ", ".join(r["misses@5"]))
    if "gate" in result:
        g, lang = result["gate"], result["language"]
        print(f"Idioma: exactitud {lang['accuracy']} (n={lang['n']}), "
              f"mensajes de ≤3 palabras {lang['short_accuracy']}")  # fmt: skip
        print(
            f"Filtro: exactitud {g['accuracy']} (n={g['n']}), falsos rechazos {g['false_refusal_rate']}, "
            f"recall inseguro {g['unsafe_recall']}, recall fuera de tema {g['off_topic_recall']}"
        )
        for gold, row in g["confusion"].items():
            print(f"  {gold:<10} → " + "  ".join(f"{pred} {n}" for pred, n in row.items()))
        for name, f in g["by_family"].items():  # reason: the reply fits the family (e.g. role-play → injection)
            print(f"  familia {name:<16} n={f['n']:<3} exactitud {f['accuracy']}  motivo {f['reason_accuracy']}")
    if "answers" in result:
        a = result["answers"]
        print(f"Respuestas ({a['n']} ítems; generador {a['generator']}, embebedor {a['embedder']}):")
        for key, value in a.items():
            if key not in ("n", "generator", "embedder"):
                print(f"  {key:<28} {value}")
