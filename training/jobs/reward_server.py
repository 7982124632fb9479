"""Tandem's reward models behind HTTP, with Llama 2's combined reward, for trainers that score
rollouts remotely (OpenRLHF's `--remote_rm_url`). No Django; runnable alone:

    TANDEM_REWARD_TOKEN=… python -m training.jobs.reward_server --helpfulness-rm rm-h/ --safety-rm rm-s/ \
        --port 5000 [--host 0.0.0.0]

It listens on 127.0.0.1 unless ``--host`` says otherwise, and answers only requests that carry the
token of the environment variable named by ``--token-env`` (TANDEM_REWARD_TOKEN): as
``Authorization: Bearer <token>``, or as the password of the URL
(``http://reward:<token>@host:5000/get_reward``, which OpenRLHF's client sends as HTTP Basic). It
refuses to start without a token.

POST /get_reward  {"query": [text, …], "prompts": [text, …], "labels": ["safety" | "helpfulness", …]}
→ {"rewards": [r, …], "scores": [r, …]}

Each query is the prompt and the response as one text, chat template applied (OpenRLHF sends it
so with `--apply_chat_template`). r = LOGIT(R_c) with R_c = σ(safety score) when the label says
the prompt is adversarial ("safety") or that probability is below 0.15, σ(helpfulness score)
otherwise (training/jobs/rewards.py); whitening is left to the trainer (`--normalize_reward`).
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .common import score_token_ids
from .rewards import SAFETY_THRESHOLD, combined_raw


class Scorer:
    def __init__(self, *, helpfulness_rm: str = "", safety_rm: str = "", max_length: int = 4096,
                 threshold: float = SAFETY_THRESHOLD, batch_size: int = 8):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if not (helpfulness_rm or safety_rm):
            raise ValueError("give a helpfulness and/or a safety reward model")
        self.models = {}
        for name, path in (("helpfulness", helpfulness_rm), ("safety", safety_rm)):
            if path:
                model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
                model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
                tokenizer = AutoTokenizer.from_pretrained(path)
                self.models[name] = (model, tokenizer)
        self.max_length, self.threshold, self.batch_size = max_length, threshold, batch_size
        self.lock = threading.Lock()

    def raw_scores(self, name: str, texts: list[str]) -> list[float] | None:
        if name not in self.models:
            return None
        model, tokenizer = self.models[name]
        sequences = [tokenizer(text, add_special_tokens=False)["input_ids"][-self.max_length:] for text in texts]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return score_token_ids(model, sequences, pad_id=pad, batch_size=self.batch_size)

    def rewards(self, queries: list[str], labels: list[str] | None) -> list[float]:
        labels = labels or [""] * len(queries)
        with self.lock:  # one forward pass at a time per model
            helpful, safe = self.raw_scores("helpfulness", queries), self.raw_scores("safety", queries)
        return [combined_raw(helpfulness=None if helpful is None else helpful[index],
                             safety=None if safe is None else safe[index],
                             is_safety_prompt=str(label).lower() == "safety", threshold=self.threshold)
                for index, label in enumerate(labels)]


MIN_TOKEN_LENGTH = 16


def authorized(header: str | None, token: str) -> bool:
    """``Bearer <token>``, or HTTP Basic whose password is the token (any user name)."""
    if not header or not token:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def make_server(scorer: Scorer, *, host: str, port: int, token: str) -> ThreadingHTTPServer:
    if len(token or "") < MIN_TOKEN_LENGTH:
        raise ValueError(f"the reward server needs a token of at least {MIN_TOKEN_LENGTH} characters")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refused(self) -> bool:
            if authorized(self.headers.get("Authorization"), token):
                return False
            self._answer(401, {"error": "a bearer token is required"})
            return True

        def do_POST(self):  # noqa: N802 — the http.server API
            if self._refused():
                return None
            if self.path.rstrip("/") != "/get_reward":
                return self._answer(404, {"error": "POST /get_reward"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                queries = body["query"]
                if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
                    raise ValueError("query must be a list of strings")
                labels = body.get("labels")
                if labels is not None and len(labels) != len(queries):
                    raise ValueError("labels must match query")
            except (ValueError, KeyError, TypeError) as error:
                return self._answer(400, {"error": str(error)})
            rewards = scorer.rewards(queries, labels)
            return self._answer(200, {"rewards": rewards, "scores": rewards})

        def do_GET(self):  # noqa: N802
            if self._refused():
                return None
            if self.path.rstrip("/") == "/health":
                return self._answer(200, {"ok": True, "models": sorted(scorer.models)})
            return self._answer(404, {"error": "POST /get_reward"})

        def log_message(self, *args):  # quiet
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--helpfulness-rm", default="")
    parser.add_argument("--safety-rm", default="")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default: loopback only).")
    parser.add_argument("--token-env", default="TANDEM_REWARD_TOKEN",
                        help="Environment variable that holds the bearer token requests must carry.")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--max-length", type=int, default=4096)
    parser.add_argument("--threshold", type=float, default=SAFETY_THRESHOLD)
    args = parser.parse_args(argv)
    token = os.environ.get(args.token_env, "")
    if len(token) < MIN_TOKEN_LENGTH:
        parser.error(f"set {args.token_env} to a token of at least {MIN_TOKEN_LENGTH} characters")
    scorer = Scorer(helpfulness_rm=args.helpfulness_rm, safety_rm=args.safety_rm, max_length=args.max_length,
                    threshold=args.threshold)
    server = make_server(scorer, host=args.host, port=args.port, token=token)
    print(json.dumps({"event": "ready", "port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
