"""As the demo annotator, over the HTTP API: start a dialogue, write a prompt, wait for both
responses of the pair (real SmolLM2 on the embedded stack), and judge it."""

import sys
import time

from demo_annotator import dialogue_started

client, dialogue_id = dialogue_started(sys.argv[1].rstrip("/"))
turn = client.post(f"/api/dialogues/{dialogue_id}/turns/",
                   json={"user_message": "Give me one tip for sleeping well."})
turn.raise_for_status()
turn = turn.json()
print(f"turn {turn['id']} posted")
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    turn = client.get(f"/api/turns/{turn['id']}/").json()
    if all(turn["responses"][side]["status"] in ("done", "failed") for side in "AB"):
        break
    time.sleep(0.5)
for side in "AB":
    response = turn["responses"][side]
    print(f"[{side}] {response['status']}: {(response['text'] or response.get('error') or '')[:200]!r}")
if [turn["responses"][side]["status"] for side in "AB"] != ["done", "done"]:
    sys.exit("both responses should be done")
judged = client.post(f"/api/turns/{turn['id']}/judgement/", json={"point": 2})
print(f"judgement: {judged.status_code}")
if judged.status_code != 201:
    sys.exit(f"the judgement was refused: {judged.text[:300]}")
