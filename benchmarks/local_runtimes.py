"""The main job (`masksearch run --n 8`) on three local llama.cpp runtimes, same model, same grammars.

- `engine`: today's in-process engine (`local:default`: `masksearch.models.llamacpp` on the
  binding's low-level C API, one context, one KV sequence per call, batched steps);
- `server`: llama.cpp's own `llama-server` (built by `benchmarks/build_llama_server.sh` from the
  source the binding vendors), started here on the embedded GGUF and reached through
  `llama-server:<model>@<url>` (`masksearch.models.llamaserver`: the grammar in every request
  body); its own counters (`/metrics`) are read after the job;
- `binding`: llama-cpp-python's public API only (`BindingChatModel` below): `Llama.create_completion`
  with `LlamaGrammar.from_string(gbnf)`, `draft_model=LlamaPromptLookupDecoding(num_pred_tokens=3)`,
  optionally `LlamaRAMCache`, the prompt formatted with the GGUF's chat template as in process;
  `--binding-instances` Llama objects (each its own context) serve the job's calls, one call each
  at a time. The job runs in this process with that model serving `local:default`.

Each run is one `masksearch run --workdir <fresh dir> --n N --no-progress` with warm caches (the
model and corpus caches of `~/.cache/masksearch` or `MASKSEARCH_CACHE`); it prints one JSON line:
generation seconds (`run.elapsed_s` of summary.json), trajectories per minute, accepted, prompt
and completion tokens, the load average before and after, and the server's own timings. Run each
under the shared benchmark lock, one runtime at a time:

    flock /tmp/bench.lock python benchmarks/local_runtimes.py engine
    flock /tmp/bench.lock python benchmarks/local_runtimes.py server --server-bin /tmp/llama-server-build/bin/llama-server
    flock /tmp/bench.lock python benchmarks/local_runtimes.py server --server-args \
        "-t 2 -tb 2 --parallel 2 -c 8192 --cont-batching --spec-type ngram-simple \
         --spec-ngram-simple-size-n 3 --spec-ngram-simple-size-m 3"   # llama.cpp's n-gram drafts
    flock /tmp/bench.lock python benchmarks/local_runtimes.py binding
    # the same recorded calls, one after another, on each runtime:
    flock /tmp/bench.lock python benchmarks/local_runtimes.py engine --call-log calls.jsonl
    flock /tmp/bench.lock python benchmarks/local_runtimes.py binding --replay calls.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from masksearch.models.llamacpp import LlamaCppChatModel

_ROLE = {"system": "system", "human": "user", "ai": "assistant", "tool": "user"}


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def gguf() -> Path:
    from masksearch.models import embedded

    return embedded.gguf_path("default")


# --- (c) llama-cpp-python's public API ------------------------------------------------------------


class BindingChatModel(BaseChatModel):
    """The embedded model on llama-cpp-python's public API: `Llama.create_completion` under
    `LlamaGrammar`, prompt-lookup drafts (`LlamaPromptLookupDecoding`), the binding's RAM state
    cache. `instances` Llama objects, `n_threads` each; a call takes a free one (the one whose
    last prompt shares the longest prefix with its own) and holds it to the end."""

    model_path: str
    n_ctx: int = 4096
    n_threads: int = 2
    instances: int = 1
    draft_tokens: int = 3
    ram_cache: bool = True
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    call_log: str | None = None
    """Append each call's inputs here when it starts (`log_call`; `--replay` reruns them)."""
    supports_output_format: ClassVar[bool] = True
    _pool: list[Any] = PrivateAttr(default_factory=list)
    _last: list[list[int]] = PrivateAttr(default_factory=list)
    _free: list[bool] = PrivateAttr(default_factory=list)
    _cond: threading.Condition | None = PrivateAttr(default=None)
    _formatter: Any = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-python-public-api"

    def load(self) -> None:
        if self._pool:
            return
        from llama_cpp import Llama, LlamaRAMCache
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        for _ in range(self.instances):
            draft = (
                LlamaPromptLookupDecoding(num_pred_tokens=self.draft_tokens)
                if self.draft_tokens
                else None
            )
            llm = Llama(
                model_path=self.model_path,
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                n_batch=512,
                draft_model=draft,
                # a draft model needs every position's logits; 0.3.36 turns that on internally
                # but sizes its logits buffer from this argument (n_batch rows), so a prompt
                # longer than n_batch fails in `Llama.eval` unless it is passed here
                logits_all=draft is not None,
                verbose=False,
                seed=self.seed if self.seed is not None else 0,
            )
            if self.ram_cache:
                llm.set_cache(LlamaRAMCache(capacity_bytes=2 << 30))
            self._pool.append(llm)
            self._last.append([])
            self._free.append(True)
        first = self._pool[0]
        template = first.metadata["tokenizer.chat_template"]
        vocab = first.tokenizer()
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=vocab.decode([first.token_eos()]),
            bos_token=vocab.decode([first.token_bos()]),
        )
        self._cond = threading.Condition()

    def _prompt(self, messages: list[BaseMessage]) -> list[int]:
        chat = [{"role": _ROLE.get(m.type, "user"), "content": str(m.content)} for m in messages]
        prefill = ""
        if chat and chat[-1]["role"] == "assistant":  # continue the assistant turn
            chat, prefill = chat[:-1], chat[-1]["content"]
        text = self._formatter(messages=chat).prompt + prefill
        tokens: list[int] = self._pool[0].tokenize(text.encode(), add_bos=False, special=True)
        return tokens

    def _take(self, prompt: list[int]) -> int:
        assert self._cond is not None
        with self._cond:
            while not any(self._free):
                self._cond.wait()

            def shared(i: int) -> int:
                n = 0
                for a, b in zip(self._last[i], prompt, strict=False):
                    if a != b:
                        break
                    n += 1
                return n

            best = max((i for i, f in enumerate(self._free) if f), key=shared)
            self._free[best] = False
            return best

    def _give(self, i: int, prompt: list[int]) -> None:
        assert self._cond is not None
        with self._cond:
            self._last[i] = prompt
            self._free[i] = True
            self._cond.notify()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        from llama_cpp import LlamaGrammar

        from masksearch.grammars import grammar_for, token_budget

        self.load()
        prompt = self._prompt(messages)
        output_format = kwargs.get("output_format")
        max_new = int(kwargs.get("max_tokens") or self.max_tokens)
        if output_format and not kwargs.get("max_tokens"):
            max_new = token_budget(output_format, max_new)
        grammar = (
            LlamaGrammar.from_string(grammar_for(output_format), verbose=False)
            if output_format
            else None
        )
        log_call(self.call_log, messages, stop, kwargs)
        i = self._take(prompt)
        start = time.perf_counter()
        try:
            out: Any = self._pool[i].create_completion(
                prompt,
                max_tokens=min(max_new, self.n_ctx - len(prompt) - 1),
                temperature=float(kwargs.get("temperature", self.temperature)),
                top_p=self.top_p,
                top_k=40,
                min_p=0.0,
                repeat_penalty=1.0,
                stop=[s for s in (stop or []) if s],
                seed=self.seed,
                grammar=grammar,
            )
        finally:
            self._give(i, prompt)
        seconds = time.perf_counter() - start
        choice = out["choices"][0]
        usage = out["usage"]
        message = AIMessage(
            content=choice["text"],
            usage_metadata={
                "input_tokens": usage["prompt_tokens"],
                "output_tokens": usage["completion_tokens"],
                "total_tokens": usage["total_tokens"],
            },
            response_metadata={
                "finish_reason": choice["finish_reason"],
                "latency_s": round(seconds, 4),
                "output_format": output_format,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def log_call(
    path: str | None, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
) -> None:
    """Append a call's inputs (messages, stop strings, format, per-call limit) as one JSON line."""
    if not path:
        return
    record = {
        "messages": [
            {"role": _ROLE.get(m.type, "user"), "content": str(m.content)} for m in messages
        ],
        "stop": stop,
        "output_format": kwargs.get("output_format"),
        "max_tokens": kwargs.get("max_tokens"),
    }
    with _log_lock, open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


_log_lock = threading.Lock()


class RecordingEngineModel(LlamaCppChatModel):
    """Today's engine, recording every call's inputs (`log_call`) for `--replay` (its
    `_agenerate` and LangChain's streaming path both go through `_astream`)."""

    call_log: str | None = None

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        log_call(self.call_log, messages, stop, kwargs)
        stream = super()._astream(messages, stop, run_manager, **kwargs)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()  # type: ignore[attr-defined]


# --- the job --------------------------------------------------------------------------------------


def job_args(workdir: Path, n: int, model: str) -> list[str]:
    return ["run", "--workdir", str(workdir), "--n", str(n), "--model", model, "--no-progress"]


def read_summary(workdir: Path) -> dict[str, Any]:
    summary = json.loads((workdir / "summary.json").read_text())
    run = summary.get("run", summary)
    elapsed = float(run["elapsed_s"])
    return {
        "generation_s": round(elapsed, 1),
        "trajectories_per_min": round(60 * run["done"] / elapsed, 2) if elapsed else None,
        "done": run["done"],
        "accepted": run["accepted"],
        "prompt_tokens": run["tokens"]["prompt"],
        "completion_tokens": run["tokens"]["completion"],
        "search_calls": run.get("search_calls"),
    }


def run_in_process(workdir: Path, n: int, model: BaseChatModel) -> dict[str, Any]:
    """The job in this process with `model` serving `local:default` (`masksearch run` builds its
    own `Resources`, so the model is put where they load `local:` models from)."""
    from masksearch.cli import run
    from masksearch.models import local

    real = local.chat_model

    def chat_model(name: str, **settings: Any) -> BaseChatModel:
        return model if name == "default" else real(name, **settings)

    local.chat_model = chat_model  # type: ignore[assignment]
    try:
        code = run(job_args(workdir, n, "local:default"))
    finally:
        local.chat_model = real  # type: ignore[assignment]
    if code not in (0, 1):
        raise SystemExit(f"job failed ({code})")
    return read_summary(workdir)


def run_subprocess(workdir: Path, n: int, model: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "masksearch.cli", *job_args(workdir, n, model)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"job failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-3000:]}")
    return read_summary(workdir)


def metrics(base: str) -> dict[str, float]:
    """llama-server's Prometheus counters (`--metrics`), `llamacpp:` prefix dropped."""
    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("llamacpp:"):
            name, _, value = line.partition(" ")
            out[name.removeprefix("llamacpp:")] = float(value)
    return out


def start_server(binary: str, port: int, extra: list[str], log: Path) -> subprocess.Popen[bytes]:
    cmd = [binary, "-m", str(gguf()), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--jinja", "--metrics", *extra]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit("llama-server did not become healthy in 300 s")


@contextlib.contextmanager
def served(args: argparse.Namespace, log: Path) -> Iterator[str]:
    """llama-server on the embedded GGUF for the duration; yields its base URL."""
    server = start_server(args.server_bin, args.port, args.server_args.split(), log)
    try:
        yield f"http://127.0.0.1:{args.port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def server_counters(base: str) -> dict[str, Any]:
    m = metrics(base)
    return {
        "prompt_tokens_evaluated": int(m.get("prompt_tokens_total", 0)),
        "prompt_s": round(m.get("prompt_seconds_total", 0.0), 1),
        "predicted_tokens": int(m.get("tokens_predicted_total", 0)),
        "predicted_s": round(m.get("tokens_predicted_seconds_total", 0.0), 1),
        "decode_calls": int(m.get("n_decode_total", 0)),
        "metrics": m,
    }


def binding_model(args: argparse.Namespace, call_log: str | None = None) -> BindingChatModel:
    return BindingChatModel(
        model_path=str(gguf()),
        instances=args.binding_instances,
        n_threads=args.binding_threads,
        ram_cache=not args.binding_no_cache,
        draft_tokens=args.binding_draft,
        call_log=call_log,
    )


def replay(model: Any, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The recorded calls one after another on `model`; seconds and tokens per call."""
    from masksearch.nodes.common import to_lc_messages

    rows = []
    for call in calls:
        kwargs: dict[str, Any] = {}
        if call.get("output_format"):
            kwargs["output_format"] = call["output_format"]
        if call.get("max_tokens"):
            kwargs["max_tokens"] = call["max_tokens"]
        start = time.perf_counter()
        msg = model.invoke(to_lc_messages(call["messages"]), stop=call.get("stop"), **kwargs)
        usage = msg.usage_metadata or {}
        print(
            f"call {len(rows) + 1}: {time.perf_counter() - start:.1f} s, "
            f"{usage.get('input_tokens')} + {usage.get('output_tokens')} tokens",
            file=sys.stderr,
            flush=True,
        )
        rows.append(
            {
                "seconds": round(time.perf_counter() - start, 2),
                "prompt_tokens": usage.get("input_tokens"),
                "completion_tokens": usage.get("output_tokens"),
            }
        )
    return {
        "calls": len(rows),
        "seconds": round(sum(r["seconds"] for r in rows), 1),
        "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in rows),
        "completion_tokens": sum(r["completion_tokens"] or 0 for r in rows),
        "per_call": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("runtime", choices=["engine", "server", "binding"])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--server-bin", default="/tmp/llama-server-build/bin/llama-server")
    ap.add_argument(
        "--server-args",
        default="-t 2 -tb 2 --parallel 2 -c 8192 --cont-batching",
        help="llama-server options besides -m/--host/--port/--jinja/--metrics",
    )
    ap.add_argument("--port", type=int, default=8093)
    ap.add_argument("--binding-instances", type=int, default=1)
    ap.add_argument("--binding-threads", type=int, default=2)
    ap.add_argument("--binding-no-cache", action="store_true")
    ap.add_argument("--binding-draft", type=int, default=3, help="0: no prompt-lookup drafts")
    ap.add_argument(
        "--call-log", help="engine (then run in process), binding: record every call's inputs here"
    )
    ap.add_argument(
        "--replay",
        type=Path,
        help="instead of the job: replay the first --replay-calls calls of this call log, one "
        "after another, on the runtime",
    )
    ap.add_argument("--replay-calls", type=int, default=8)
    ap.add_argument("--label", default="")
    ap.add_argument("--json", type=Path, help="append the result line to this file")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix=f"local-runtimes-{args.runtime}-"))
    result: dict[str, Any] = {
        "runtime": args.runtime,
        "label": args.label,
        "loadavg_before": loadavg(),
        "workdir": str(workdir),
    }
    start = time.perf_counter()
    calls = None
    if args.replay:
        lines = args.replay.read_text().splitlines()[: args.replay_calls]
        calls = [json.loads(line) for line in lines]
        result["replay"] = str(args.replay)
    else:
        result["n"] = args.n
    if args.runtime == "engine":
        if calls is not None:
            from masksearch.context import Context
            from masksearch.models import load_chat_model

            model = load_chat_model("local:default", **Context().model_settings())
            model.load()
            result.update(replay(model, calls))
        elif args.call_log:  # in process, recording the calls
            from masksearch.context import Context

            settings = Context().model_settings()  # what `local:default` gets in the job
            settings.pop("timeout")
            settings["repeat_penalty"] = settings.pop("repetition_penalty")
            model = RecordingEngineModel(model_path="default", call_log=args.call_log, **settings)
            result.update(run_in_process(workdir, args.n, model))
        else:
            result.update(run_subprocess(workdir, args.n, "local:default"))
    elif args.runtime == "server":
        result["server_args"] = args.server_args
        log = workdir.parent / f"{workdir.name}.server.log"
        result["server_log"] = str(log)
        with served(args, log) as base:
            spec = f"llama-server:default@{base}/v1"
            if calls is not None:
                from masksearch.context import Context
                from masksearch.models import load_chat_model

                result.update(replay(load_chat_model(spec, **Context().model_settings()), calls))
            else:
                result.update(run_subprocess(workdir, args.n, spec))
            result["server"] = server_counters(base)
    else:
        result["binding"] = {
            "instances": args.binding_instances,
            "threads_each": args.binding_threads,
            "ram_cache": not args.binding_no_cache,
            "draft_tokens": args.binding_draft,
        }
        if calls is not None:
            model = binding_model(args)
            model.load()
            result.update(replay(model, calls))
        else:
            result.update(run_in_process(workdir, args.n, binding_model(args, args.call_log)))
    result["wall_s"] = round(time.perf_counter() - start, 1)
    result["loadavg_after"] = loadavg()
    line = json.dumps(result)
    print(line)
    if args.json:
        with args.json.open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
