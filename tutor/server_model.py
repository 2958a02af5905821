"""A ChatModel served by any OpenAI-compatible server (llama_cpp.server, vLLM, Ollama), by base URL.

For classrooms: one GPU server runs the model and every tutor front end stays small. Streams
`/completions` (style 'completion', base models) or `/chat/completions` (style 'chat') as server-sent
events, with a timeout on connecting and on every read, and retries while nothing has been received
yet. It does not start or manage the server, and cannot see the server's tokenizer: token counts are
a conservative estimate, and n_ctx is what the settings say the server was started with.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tutor.chat import ModelInfo, Prompt, Style
from tutor.config import Settings
from tutor.errors import ModelServerError
from tutor.types import ChatPrompt, TextPrompt

HOW_TO = (
    "Compruebe que el servidor está en marcha (por ejemplo: python -m llama_cpp.server --model "
    "ARCHIVO.gguf --host 127.0.0.1 --port 8080) y que TUTOR_LLM_SERVER_URL apunta a él (con /v1), "
    "o quite TUTOR_LLM_SERVER_URL para usar el modelo local."
)
# The URL is configured explicitly: ignore http_proxy and friends, which would send a classroom's
# loopback or LAN address to a proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class OpenAICompatibleChatModel:
    """Streams from `<base_url>/completions` or `/chat/completions`. No local model, no lock."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        style: Style = "chat",
        n_ctx: int = 4096,
        timeout: float = 60.0,
        retries: int = 2,
        temperature: float = 0.0,
        top_p: float = 0.95,
        seed: int | None = None,
        stop: Sequence[str] = (),
    ) -> None:
        self.base_url, self.style, self.n_ctx = base_url.rstrip("/"), style, n_ctx
        self._model, self._timeout, self._retries = model, timeout, retries
        self._sampling: dict[str, Any] = {"temperature": temperature, "top_p": top_p}
        if seed is not None:
            self._sampling["seed"] = seed
        self._stop = list(stop)

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAICompatibleChatModel:
        assert settings.llm_server_url is not None
        return cls(
            settings.llm_server_url,
            model=settings.llm_server_model,
            style="completion" if settings.prompt_style == "completion" else "chat",
            n_ctx=settings.n_ctx,
            timeout=settings.llm_server_timeout,
            retries=settings.llm_server_retries,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=settings.seed,
            stop=settings.stop,
        )

    def info(self) -> ModelInfo:
        name = self._model or "(el primero que liste el servidor)"
        return ModelInfo("servidor OpenAI-compatible", self.base_url, name, self.style, self.n_ctx)

    def count_tokens(self, prompt: Prompt) -> int:
        """An over-estimate, one token per 3 UTF-8 bytes plus a few per message (see module doc)."""
        if isinstance(prompt, TextPrompt):
            return len(prompt.text.encode("utf-8")) // 3 + 1
        return sum(len(m.content.encode("utf-8")) // 3 + 4 for m in prompt.messages) + 2

    def stream(self, prompt: Prompt, *, max_tokens: int) -> Iterator[str]:
        """Connect when iterated; closing the iterator closes the connection (the server stops)."""
        if isinstance(prompt, ChatPrompt) != (self.style == "chat"):
            raise ValueError(f"a {type(prompt).__name__} for a {self.style}-style model")
        body: dict[str, Any] = {
            "max_tokens": max_tokens,
            "stream": True,
            "stop": [*prompt.stop, *self._stop],
            **self._sampling,
        }
        if isinstance(prompt, ChatPrompt):
            body["messages"] = [{"role": m.role, "content": m.content} for m in prompt.messages]
            return self._generate("/chat/completions", body)
        body["prompt"] = prompt.text
        return self._generate("/completions", body)

    def _generate(self, path: str, body: dict[str, Any]) -> Iterator[str]:
        if self._model is None:
            with self._open("/models", None) as response:
                self._model = str(json.load(response)["data"][0]["id"])
        body["model"] = self._model
        with self._open(path, body) as response:
            try:
                for data in _sse_data(response):
                    if data.strip() == "[DONE]":
                        return
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise ModelServerError(
                            f"El servidor {self.base_url} respondió con un error: {chunk['error']}. {HOW_TO}"
                        )
                    choice = chunk["choices"][0] if chunk.get("choices") else {}
                    text = (choice.get("delta") or {}).get("content") or choice.get("text")
                    if text:
                        yield text
            except (OSError, http.client.HTTPException) as exc:  # tokens already shown: no retry
                raise ModelServerError(
                    f"El servidor {self.base_url} dejó de responder a mitad de la respuesta "
                    f"({_reason(exc)}). Inténtelo de nuevo; si sigue, {HOW_TO}"
                ) from exc

    def _open(self, path: str, body: dict[str, Any] | None) -> Any:
        """The HTTP response, after up to `retries` more attempts on refusal, timeout or a 5xx."""
        url = self.base_url + path
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        problem = ""
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
            try:
                return _OPENER.open(request, timeout=self._timeout)
            except urllib.error.HTTPError as exc:
                detail = exc.read(300).decode("utf-8", "replace").strip()
                problem = f"HTTP {exc.code}: {detail}" if detail else f"HTTP {exc.code}"
                if exc.code < 500:  # the request is wrong, not the server busy: no retry
                    raise ModelServerError(f"El servidor {url} rechazó la petición ({problem}). {HOW_TO}") from exc
            except urllib.error.URLError as exc:
                problem = _reason(exc.reason)
            except TimeoutError:
                problem = f"sin respuesta en {self._timeout:g} s"
            except (ConnectionError, OSError) as exc:
                problem = _reason(exc)
        raise ModelServerError(
            f"El servidor de modelos {url} no responde ({problem}) tras {self._retries + 1} intentos. {HOW_TO}"
        )


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "conexión rechazada: no hay nada escuchando en ese puerto"
    if isinstance(reason, TimeoutError):
        return "tiempo de espera agotado sin datos"
    return str(reason)


def _sse_data(lines: Iterable[bytes]) -> Iterator[str]:
    """The `data:` payloads of a server-sent-event stream, one per event."""
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        # ":" comments (keep-alive pings), "event:" and "id:" lines carry no text
    if data:
        yield "\n".join(data)
