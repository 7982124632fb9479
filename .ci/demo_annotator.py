"""The demo annotator of `make run`, over the HTTP API: what the smoke checks share."""

import httpx


def dialogue_started(base: str) -> tuple[httpx.Client, int]:
    """A client holding the demo annotator's API token, and a new helpfulness dialogue's id."""
    token = httpx.post(f"{base}/api/auth/token/", json={"username": "demo-annotator", "password": "judge-pairs-42"},
                       timeout=30)
    token.raise_for_status()
    client = httpx.Client(base_url=base, headers={"Authorization": f"Token {token.json()['token']}"}, timeout=30)
    dialogue = client.post("/api/dialogues/", json={"focus": "helpfulness"})
    dialogue.raise_for_status()
    return client, dialogue.json()["id"]
