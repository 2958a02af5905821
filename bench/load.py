"""Load benchmark: the real app (`tutor serve`, packaged model) driven by N simulated students.

    .venv/bin/python bench/load.py [--n 1 5 20 50] [--duration 120] [--think 1.0]
    .venv/bin/python bench/load.py --soak 600 --n 20      # memory over ten minutes, sampled every 10 s
    .venv/bin/python bench/load.py --url http://127.0.0.1:8080 --n 4   # drive a running server (nginx)

For each N it starts `tutor serve` on a free loopback port with a prepared data folder, then runs N
threads, each with its own gradio_client Client, holding conversations until the time is up: a
course question, a follow-up with the history, one off-topic message, and a thumbs-down with a
comment on the conversation's first answer as soon as it arrives (the "/feedback" endpoint). No new
message starts after the deadline; those in flight are waited for, so "sent = answered + errors"
shows whether anything was lost.

Figures per N: messages sent / answered, errors, Gradio queue wait (submit -> PROCESSING), time to
the first visible text (the course's own sentences, shown before the model's turn), total latency
(the verified answer), answers per minute, the server's peak RSS (VmHWM, and the sampled VmRSS of
the process tree), and first-come-first-served order over the opening burst of N simultaneous
questions. Results merge into docs/load.json; docs/load-latency.svg charts latency against N.
It asserts nothing: a shared, noisy machine gives figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
COURSE_QUESTIONS = (
    "¿Qué es BERT y cómo lee el texto?",
    "¿Qué mejoras introdujo RoBERTa respecto a BERT?",
    "¿Para qué sirve el mecanismo de atención en los Transformers?",
    "¿Qué es RAG y por qué reduce las alucinaciones?",
    "¿En qué se diferencian los modelos generativos de los discriminativos?",
    "¿Qué es el ajuste fino (fine-tuning) de un modelo de lenguaje?",
    "¿Qué es la cuantización de un modelo?",
    "¿Cómo funciona GPT a la hora de generar texto?",
)
FOLLOW_UPS = (
    "¿Puedes darme un ejemplo?",
    "¿Y eso para qué se usa en la práctica?",
    "No lo entiendo, explícalo más fácil",
)
OFF_TOPIC = ("¿Quién ganó el mundial de fútbol de 2010?", "¿Me recomiendas una receta de paella?",
             "¿Qué tiempo hará mañana en Madrid?")  # fmt: skip


@dataclass
class Request:
    """One message or feedback call, with client-side timestamps (seconds since the run started)."""

    student: int
    kind: str  # course | follow_up | off_topic | feedback
    submitted: float
    processing: float | None = None  # Gradio's PROCESSING status arrived
    first_text: float | None = None  # first streamed update with text
    done: float | None = None
    ok: bool = False
    error: str = ""
    answer_kind: str = ""  # meta["kind"] of the final reply (answer, off_topic, …)
    cited: bool = False
    burst: bool = False  # the student's first message, sent together with everyone else's


@dataclass
class Run:
    n: int
    duration: float
    requests: list[Request] = field(default_factory=list)
    rss: list[tuple[float, int, int]] = field(default_factory=list)  # (t, sum VmRSS kB, max VmHWM kB)
    feedback_note: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


# --- the server -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_data_dir(data_dir: Path) -> None:
    """The index is built once (a few minutes of e5 on a busy machine) and reused by every run."""
    if (data_dir / "index" / "manifest.json").exists():
        return
    print(f"Preparando {data_dir} (índice del curso, una vez)…", flush=True)
    subprocess.run([str(tutor_bin()), "--data-dir", str(data_dir), "ingest", "--quiet"], check=True)


def tutor_bin() -> Path:
    return Path(sys.executable).with_name("tutor")


def start_server(
    data_dir: Path, model: str, log_path: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [str(tutor_bin()), "--data-dir", str(data_dir), "serve", "--port", str(port), "--model", model]
    with log_path.open("wb") as log:  # a pipe nobody reads would fill up and stall the server
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}/"
    wait_http(url, proc, log_path, timeout=300)
    return proc, url


def wait_http(url: str, proc: subprocess.Popen | None, log_path: Path | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{tail}")
        try:
            with opener.open(url + "config", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"no answer from {url} in {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as handle:
                    todo += [int(c) for c in handle.read().split()]
        except OSError:
            pass
    return pids


def memory_kb(pid: int) -> tuple[int, int]:
    """(sum of VmRSS, max of VmHWM) over the process and its children, in kB."""
    rss = hwm = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except OSError:
            continue
        rss += int(fields.get("VmRSS", "0 kB").split()[0])
        hwm = max(hwm, int(fields.get("VmHWM", "0 kB").split()[0]))
    return rss, hwm


def sample_memory(pid: int, run: Run, every: float, stop: threading.Event, t0: float) -> None:
    while True:
        rss, hwm = memory_kb(pid)
        if rss:
            run.rss.append((round(time.monotonic() - t0, 1), rss, hwm))
        if stop.wait(every):
            return


# --- the students -----------------------------------------------------------------------------------


def timed_call(client: Any, run: Run, req: Request, t0: float, wall0: datetime, *args: Any, api: str) -> Any:
    """Submit, wait for the end without busy polling, then read the update times gradio_client kept."""
    job = client.submit(*args, api_name=api)
    try:
        result = job.result(timeout=1800)
    except Exception as exc:  # counted, never raised: one student's failure must not stop the others
        req.done, req.error = time.monotonic() - t0, f"{type(exc).__name__}: {exc}"[:300]
        return None
    req.done = time.monotonic() - t0
    # gradio_client queues every update with its arrival time; nobody consumed them, so all are here.
    # An output update is followed by the status update (ITERATING) stamped when it arrived.
    pending_output = False
    for update in list(getattr(job.communicator.updates, "_queue", [])):
        if getattr(update, "type", "") == "output" and not getattr(update, "final", False):
            outputs = update.outputs
            text = outputs[0] if isinstance(outputs, (list, tuple)) and outputs else outputs
            pending_output = bool(isinstance(text, str) and text.strip())
            continue
        stamp = getattr(update, "time", None)
        if stamp is None:
            continue
        since = (stamp - wall0).total_seconds()
        code = str(getattr(update.code, "value", update.code))
        if code == "PROCESSING" and req.processing is None:
            req.processing = since
        if pending_output and req.first_text is None:
            req.first_text = since
        pending_output = False
    return result


def student(number: int, url: str, run: Run, t0: float, wall0: datetime, deadline: float, think: float,
            feedback: bool, start_at: float) -> None:  # fmt: skip
    from gradio_client import Client

    rng = random.Random(number)
    try:
        client = Client(url, verbose=False)
    except Exception as exc:
        with run.lock:
            run.requests.append(Request(number, "course", 0.0, done=0.0, error=f"connect: {exc}"[:300]))
        return
    time.sleep(max(0.0, start_at - time.monotonic()))
    first = True
    while time.monotonic() < deadline or first:
        history: list = []
        rated = False
        script = [("course", rng.choice(COURSE_QUESTIONS)), ("follow_up", rng.choice(FOLLOW_UPS)),
                  ("off_topic", rng.choice(OFF_TOPIC))]  # fmt: skip
        for kind, message in script:
            if time.monotonic() >= deadline and not first:
                return
            req = Request(number, kind, time.monotonic() - t0, burst=first)
            first = False
            with run.lock:
                run.requests.append(req)
            result = timed_call(client, run, req, t0, wall0, message, "explain", history, api="/chat")
            if result is None:
                return  # this conversation cannot go on without its history
            text, turns = (result[0], result[1]) if isinstance(result, (list, tuple)) else (result, None)
            meta = (turns[-1].get("meta") or {}) if isinstance(turns, list) and turns else {}
            req.answer_kind = str(meta.get("kind", ""))
            req.cited = bool(meta.get("citations"))
            if not isinstance(text, str) or not text.strip() or not meta.get("id"):
                req.error = "reply without text or without an answer id"
            elif req.answer_kind == "error":
                req.error = "the app answered with its error message"
            else:
                req.ok = True
                history = turns
            if feedback and req.ok and not rated:  # thumbs down on the conversation's first answer, as read
                rated = True
                rate(client, run, number, t0, wall0, str(meta["id"]))
            time.sleep(rng.uniform(0.5, 1.5) * think)


def rate(client: Any, run: Run, number: int, t0: float, wall0: datetime, answer_id: str) -> None:
    req = Request(number, "feedback", time.monotonic() - t0)
    with run.lock:
        run.requests.append(req)
    status = timed_call(client, run, req, t0, wall0, answer_id, "down", "No me ha quedado claro.", api="/feedback")
    req.ok = isinstance(status, str) and bool(status.strip())
    req.answer_kind = (status or "")[:80] if isinstance(status, str) else ""
    if not req.ok and not req.error:
        req.error = "feedback returned no status"


def has_feedback_endpoint(url: str) -> bool:
    from gradio_client import Client

    api = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
    return "/feedback" in (api or {}).get("named_endpoints", {})


def run_load(url: str, n: int, duration: float, think: float, pid: int | None, rss_every: float) -> Run:
    run = Run(n, duration)
    feedback = has_feedback_endpoint(url)
    if not feedback:
        run.feedback_note = "the app has no /feedback endpoint yet: the thumbs-down step was skipped"
        print(f"  Nota: {run.feedback_note}", flush=True)
    stop = threading.Event()
    t0, wall0 = time.monotonic(), datetime.now()
    sampler = None
    if pid is not None:
        sampler = threading.Thread(target=sample_memory, args=(pid, run, rss_every, stop, t0), daemon=True)
        sampler.start()
    # Every client connects first; then the opening questions go out 50 ms apart, so that their order
    # of submission is well defined for the fairness check.
    start_at = time.monotonic() + 5 + 0.2 * n
    deadline = start_at + duration
    threads = [
        threading.Thread(target=student, args=(i, url, run, t0, wall0, deadline, think, feedback, start_at + 0.05 * i))
        for i in range(n)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    if sampler is not None:
        sampler.join()
    return run


# --- figures ----------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))], 2)


def fairness(requests: list[Request]) -> dict[str, Any]:
    """First come, first served over the opening burst (every student's first question, 50 ms apart).

    Only answers that went through the model count: a message the gate answers never waits for it,
    so it rightly finishes early. `pairs_in_order`: of every two such answers, the share that finished
    in the order they were sent. `max_overtake_s`: the widest submission gap any later request
    overtook (requests sent closer than planning takes, 0.1-0.5 s here, can swap: the model's turnstile
    serves them in the order their gate and retrieval finished)."""
    burst = sorted(
        (r for r in requests if r.burst and r.ok and r.done is not None and r.answer_kind == "answer"),
        key=lambda r: r.submitted,
    )
    pairs = kept = 0
    overtake = 0.0
    for i, a in enumerate(burst):
        for b in burst[i + 1 :]:
            pairs += 1
            if a.done <= b.done:  # type: ignore[operator]
                kept += 1
            else:
                overtake = max(overtake, b.submitted - a.submitted)
    finish = [r.student for r in sorted(burst, key=lambda r: r.done)]  # type: ignore[arg-type, return-value]
    sent = [r.student for r in burst]
    displaced = max((abs(sent.index(s) - p) for p, s in enumerate(finish)), default=0)
    return {
        "burst": len(burst),
        "pairs_in_order": round(kept / pairs, 3) if pairs else None,
        "max_displacement": displaced,
        "max_overtake_s": round(overtake, 2),
    }


def summarize(run: Run) -> dict[str, Any]:
    msgs = [r for r in run.requests if r.kind != "feedback"]
    answered = [r for r in msgs if r.ok]
    feedback = [r for r in run.requests if r.kind == "feedback"]
    course = [r for r in answered if r.kind in ("course", "follow_up") and r.answer_kind in ("answer", "hint")]
    span = [r.done for r in run.requests if r.done is not None]
    first = min((r.submitted for r in run.requests), default=0.0)
    minutes = max((max(span, default=first) - first) / 60, 1e-9)
    lat = [r.done - r.submitted for r in answered]  # type: ignore[operator]
    model = [r.done - r.submitted for r in course]  # type: ignore[operator]
    wait = [r.processing - r.submitted for r in answered if r.processing is not None]
    ttft = [r.first_text - r.submitted for r in answered if r.first_text is not None]
    errors = [r for r in run.requests if r.error]
    out = {
        "n": run.n,
        "duration_s": run.duration,
        "sent": len(msgs),
        "answered": len(answered),
        "errors": len(errors),
        "lost": len(msgs) - len(answered) - len([r for r in msgs if r.error]),
        "course_answers_cited": f"{sum(r.cited for r in course)}/{len(course)}",
        "feedback_sent": len(feedback),
        "feedback_ok": sum(r.ok for r in feedback),
        "queue_wait_p50": pct(wait, 0.5),
        "queue_wait_p95": pct(wait, 0.95),
        "first_text_p50": pct(ttft, 0.5),
        "first_text_p95": pct(ttft, 0.95),
        "latency_p50": pct(lat, 0.5),
        "latency_p95": pct(lat, 0.95),
        "course_latency_p50": pct(model, 0.5),
        "course_latency_p95": pct(model, 0.95),
        "answers_per_min": round(len(answered) / minutes, 1),
        "wall_s": round(minutes * 60, 1),
        "peak_rss_mb": round(max((s[1] for s in run.rss), default=0) / 1024, 1),
        "peak_hwm_mb": round(max((s[2] for s in run.rss), default=0) / 1024, 1),
        "fairness": fairness(run.requests),
        "error_samples": sorted({r.error for r in errors})[:5],
        "feedback_replies": sorted({r.answer_kind for r in feedback if r.ok})[:3],
    }
    if run.feedback_note:
        out["note"] = run.feedback_note
    return out


def rss_slope(samples: list[tuple[float, int, int]], skip: float = 60.0) -> dict[str, Any]:
    """Least-squares slope of VmRSS (MB per minute), after a warm-up minute."""
    points = [(t, rss / 1024) for t, rss, _ in samples if t >= skip] or [(t, rss / 1024) for t, rss, _ in samples]
    if len(points) < 2:
        return {"samples": len(points), "slope_mb_per_min": None}
    xs, ys = [p[0] / 60 for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return {"samples": len(points), "slope_mb_per_min": round(slope, 3), "first_mb": round(ys[0], 1),
            "last_mb": round(ys[-1], 1), "min_mb": round(min(ys), 1), "max_mb": round(max(ys), 1)}  # fmt: skip


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("N", "sent", "answered", "errors", "lost", "wait p50/p95", "first text p50/p95", "total p50/p95",
            "answers/min", "peak RSS MB", "FCFS pairs", "thumbs-down ok")  # fmt: skip
    print(" | ".join(head))
    for r in rows:
        f = r["fairness"]
        print(" | ".join(str(x) for x in (
            r["n"], r["sent"], r["answered"], r["errors"], r["lost"],
            f"{r['queue_wait_p50']}/{r['queue_wait_p95']}", f"{r['first_text_p50']}/{r['first_text_p95']}",
            f"{r['latency_p50']}/{r['latency_p95']}", r["answers_per_min"], r["peak_rss_mb"],
            f"{f['pairs_in_order']} ({f['burst']}; ≤{f.get('max_overtake_s')} s)",
            f"{r['feedback_ok']}/{r['feedback_sent']}",
        )))  # fmt: skip


def svg_chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Total latency and first visible text (p50 and p95) against N, drawn by hand (no matplotlib)."""
    rows = sorted(rows, key=lambda r: r["n"])
    series = [
        ("latency_p95", "#c0392b", "total p95", "6,3"),
        ("latency_p50", "#c0392b", "total p50", ""),
        ("first_text_p95", "#2471a3", "first text p95", "6,3"),
        ("first_text_p50", "#2471a3", "first text p50", ""),
    ]
    w, h, left, right, top, bottom = 640, 380, 60, 150, 30, 50
    ns = [r["n"] for r in rows]
    top_value = max([r[k] or 0 for r in rows for k, *_ in series] + [1.0])
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10**9) if top_value / s <= 6)
    ymax = step * (int(top_value // step) + 1)
    xs = {n: left + (w - left - right) * (i / max(1, len(ns) - 1)) for i, n in enumerate(ns)}

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - v / ymax)

    title = "Latency against simultaneous students (seconds)"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14">{title}</text>',
    ]
    for i in range(int(ymax // step) + 1):
        v = step * i
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for n, x in xs.items():
        out.append(f'<text x="{x:.1f}" y="{h - bottom + 18}" text-anchor="middle">{n}</text>')
    out.append(f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">N students</text>')
    for i, (key, colour, label, dash) in enumerate(series):
        pts = [(xs[r["n"]], y(r[key])) for r in rows if r.get(key) is not None]
        style = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{style} points="'
                   + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')  # fmt: skip
        out += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"/>' for a, b in pts]
        ly = top + 20 + 20 * i
        out.append(f'<line x1="{w - right + 10}" x2="{w - right + 35}" y1="{ly}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="2"{style}/><text x="{w - right + 40}" y="{ly + 4}">{label}</text>')  # fmt: skip
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def save(results_path: Path, key: str, value: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(results_path.read_text()) if results_path.exists() else {}
    data[key] = value
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 5, 20, 50], help="simultaneous students")
    parser.add_argument("--duration", type=float, default=120, help="seconds of new messages per N")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between a student's messages (s)")
    parser.add_argument("--soak", type=float, default=None, help="one run of this many seconds; RSS every 10 s")
    parser.add_argument("--model", choices=["auto", "echo", "none"], default="auto")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "tutor-load" / "data")
    parser.add_argument("--url", help="drive this running app instead of starting one (no RSS figures)")
    parser.add_argument("--results", type=Path, default=DOCS / "load.json")
    parser.add_argument("--chart", type=Path, default=DOCS / "load-latency.svg")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()

    if not args.url:
        prepare_data_dir(args.data_dir)
    rows = []
    for n in args.n:
        duration = args.soak or args.duration
        proc, url = None, args.url
        if not url:
            log_path = args.data_dir.parent / f"serve-n{n}.log"
            print(f"N={n}: arrancando tutor serve…", flush=True)
            proc, url = start_server(args.data_dir, args.model, log_path)
        try:
            print(f"N={n}: {n} estudiantes durante {duration:.0f} s en {url}", flush=True)
            run = run_load(url, n, duration, args.think, proc.pid if proc else None, 10.0 if args.soak else 1.0)
        finally:
            if proc is not None:
                stop_server(proc)
        row = summarize(run)
        if args.soak:
            row["rss_slope"] = rss_slope(run.rss)
            row["rss_samples_mb"] = [(t, round(rss / 1024, 1)) for t, rss, _ in run.rss]
            s = row["rss_slope"]
            print(f"Soak N={n}, {duration:.0f} s: VmRSS {s.get('first_mb')} -> {s.get('last_mb')} MB "
                  f"(min {s.get('min_mb')}, max {s.get('max_mb')}), pendiente {s['slope_mb_per_min']} MB/min "
                  f"sobre {s['samples']} muestras tras el primer minuto")  # fmt: skip
        rows.append(row)
        print_table([row])
        if not args.no_save and not args.url:
            data = save(args.results, f"soak_n{n}" if args.soak else f"n{n}", {**row, "model": args.model,
                        "date": datetime.now().isoformat(timespec="seconds"), "think_s": args.think})  # fmt: skip
            points = [v for k, v in data.items() if k.startswith("n") and isinstance(v, dict)]
            svg_chart(points, args.chart)
    print()
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
