"""Nothing leaves the machine: the whole app works in a network namespace that has only loopback.

`unshare -n` gives the server and its client a network with no way out (no interface but `lo`); a
conversation with a follow-up, an off-topic message and a thumbs-down must work there exactly as it
does here, and the store must keep no identity. The in-process socket guard of conftest.py cannot see
what a subprocess does; the namespace can.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNSHARE = shutil.which("unshare")

# Runs inside the namespace: bring loopback up, start the app, hold a conversation through gradio_client.
SCRIPT = r"""
import json, os, socket, subprocess, sys, time
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
out = {"interfaces": [line.split(":")[1].strip() for line in links.splitlines()]}
s = socket.socket(); s.settimeout(2)
out["outside_reachable"] = s.connect_ex(("1.1.1.1", 80)) == 0
port = 7961
server = subprocess.Popen([sys.argv[1], "serve", "--port", str(port), "--model", "auto"],
                          stdout=open(sys.argv[2], "w"), stderr=subprocess.STDOUT)
deadline = time.monotonic() + 240
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
    except OSError:
        time.sleep(0.5)
from gradio_client import Client
client = Client(f"http://127.0.0.1:{port}/", verbose=False)
turns = []
out["replies"] = []
for message in ["¿Qué es RAG y para qué sirve?", "¿y qué problema resuelve?", "¿quién ganó el mundial de 2010?"]:
    text, turns = client.predict(message, "explain", turns, api_name="/chat")
    out["replies"].append({"text": text, "meta": turns[-1]["meta"]})
out["feedback"] = client.predict(turns[1]["meta"]["id"], "down", "sin ejemplos", api_name="/feedback")
server.terminate(); server.wait(timeout=60)
out["server_exit"] = server.returncode
print(json.dumps(out))
"""


@pytest.mark.skipif(not UNSHARE, reason="unshare (util-linux) is missing")
def test_a_full_conversation_works_with_no_network_at_all(course_settings, course_index, gemma_path, tmp_path):
    probe = subprocess.run([UNSHARE, "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.decode().strip()}")
    data = tmp_path / "data"
    shutil.copytree(course_settings.index_dir, data / course_settings.index_dir.name)
    env = {**os.environ, "TUTOR_DATA_DIR": str(data), "TUTOR_KNOWLEDGE_DIR": str(course_settings.knowledge_dir),
           "TUTOR_GGUF": str(gemma_path), "TUTOR_N_THREADS": "1", "TUTOR_N_THREADS_BATCH": "1",
           "TUTOR_EMBED_THREADS": "1", "TUTOR_MAX_TOKENS": "96"}  # fmt: skip
    log = tmp_path / "serve.log"
    run = subprocess.run(
        [UNSHARE, "-n", sys.executable, "-c", SCRIPT, str(REPO / ".venv" / "bin" / "tutor"), str(log)],
        capture_output=True, text=True, env=env, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:] + log.read_text(errors="replace")[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["interfaces"] == ["lo"] and not out["outside_reachable"]
    first, follow_up, off_topic = out["replies"]
    assert "§4.3" in first["text"] and first["meta"]["kind"] == "answer"
    assert follow_up["meta"]["kind"] == "answer" and follow_up["meta"]["citations"]
    assert off_topic["meta"]["kind"] == "redirect"
    assert "Gracias" in out["feedback"] and out["server_exit"] == 0

    # The store keeps what happened, never who: no address, session or user anywhere in it.
    with sqlite3.connect(data / "tutor.sqlite3") as db:
        columns = {c[1] for t in db.execute("select name from sqlite_master where type='table'")
                   for c in db.execute(f"pragma table_info({t[0]})")}  # fmt: skip
        assert db.execute("select count(*) from feedback").fetchone()[0] == 1
    assert not columns & {"ip", "address", "client", "session", "session_hash", "user", "user_id", "host"}
