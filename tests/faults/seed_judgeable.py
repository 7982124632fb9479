"""Run as a script (its own process, on the database in DATABASE_URL): annotators with API tokens,
each with turns whose two responses are done, written as the sampling worker writes them.
Prints JSON: [{"token": …, "turns": [[turn id, generation shown as A, the other], …]}, …]."""

import json
import sys

import django

django.setup()

from django.utils import timezone  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from accounts.services import user_create  # noqa: E402
from annotation.models import Dialogue, Turn  # noqa: E402
from modelserving.models import Generation, Pair, PolicyVariant  # noqa: E402


def main(annotators: int, turns: int) -> list[dict]:
    variant = PolicyVariant.objects.create(name="seeded", base_url="http://127.0.0.1:9/v1", model_name="seeded",
                                           temperature_min=0.7, temperature_max=1.0, is_active=False)
    now, seeded = timezone.now(), []
    for index in range(annotators):
        user = user_create(username=f"seeded-{index}", password="a-long-password-9", role="annotator")
        rows = []
        for number in range(turns):
            dialogue = Dialogue.objects.create(annotator=user, focus="helpfulness")
            messages = [{"role": "user", "content": f"Question {number} of {index}"}]
            pair = Pair.objects.create(messages=messages, strategy="two_variants")
            a, b = (Generation.objects.create(
                pair=pair, position=position, variant=variant, model_name="seeded", messages=messages,
                temperature=0.8, top_p=0.9, seed=position, max_tokens=16, status="done", text=f"Answer {position}.",
                finish_reason="stop", attempts=1, started_at=now, finished_at=now) for position in (1, 2))
            turn = Turn.objects.create(dialogue=dialogue, index=0, user_message=messages[0]["content"], pair=pair,
                                       left_generation=a)
            rows.append([turn.pk, a.pk, b.pk])
        seeded.append({"token": Token.objects.create(user=user).key, "turns": rows})
    return seeded


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
