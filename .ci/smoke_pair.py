"""Sample one real pair through the HTTP API as the demo annotator and wait for both responses."""

import sys
import time

import httpx

base = sys.argv[1].rstrip("/")
auth = ("demo-annotator", "judge-pairs-42")
response = httpx.post(f"{base}/api/pairs/", auth=auth, timeout=30,
                      json={"messages": [{"role": "user", "content": "Give me one tip for sleeping well."}]})
response.raise_for_status()
pair = response.json()
print(f"pair {pair['id']} requested")
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    pair = httpx.get(f"{base}/api/pairs/{pair['id']}/", auth=auth, timeout=30).json()
    statuses = [g["status"] for g in pair["generations"]]
    if all(s in ("done", "failed") for s in statuses):
        break
    time.sleep(0.5)
for generation in pair["generations"]:
    print(f"[{generation['position']}] {generation['status']}: {(generation['text'] or generation['error'])[:200]!r}")
if [g["status"] for g in pair["generations"]] != ["done", "done"]:
    sys.exit("both generations should be done")
