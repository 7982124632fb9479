"""A tiny chat model that writes words: the tests' random-weight Llama, taught a few thousand short
answers made of plain and polite sentences.

The random model samples uniformly from 49,152 tokens, so nothing in its answers is learnable from a
few hundred judgements. After a few hundred steps on this corpus it answers in these sentences, a
different mix each time, so a taste such as politeness (annotation.workspace.simulation.keyword_preference)
varies across its samples: a reward model can learn it from judgements and rejection sampling can
select for it — what the loop-efficacy test needs. Built once under var/test-models/ (about half a
minute on a CPU).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PLAIN = (
    "The answer depends on the details.", "Start with a small step.", "Water boils at one hundred degrees.",
    "This works best in the morning.", "Most people find it easy after a week.", "Use a clean cloth.",
    "The first part is the hardest.", "Keep a short list.", "It takes about ten minutes.", "Check it twice.",
    "A map helps a lot.", "Read the label first.", "Practice every day.", "The sea is calm today.",
    "Write it down.", "Ask a friend to help.", "Light comes from the sun.", "Choose a quiet place.",
)
POLITE = (
    "Thank you for asking.", "Sure, I am glad to help.", "Please let me know if you need more.",
    "Certainly, happy to help.", "Thanks, that is a kind question.", "You are welcome to ask again.",
)
VERSION = 1


def corpus(prompts: list[str], n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, answer) pairs; an answer is 1–4 sentences, each polite with probability 0.3."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        sentences = [rng.choice(POLITE if rng.random() < 0.3 else PLAIN) for _ in range(rng.randint(1, 4))]
        rows.append((rng.choice(prompts), " ".join(sentences)))
    return rows


def build_tiny_chat(out_dir: Path, *, base_dir: Path, prompts: list[str], steps: int = 200, seed: int = 0) -> Path:
    from modelserving.local_models import MARKER, _save_checkpoint

    out_dir = Path(out_dir)
    marker = out_dir / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("tiny_chat_version") == VERSION:
        return out_dir

    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = LlamaForCausalLM.from_pretrained(base_dir)
    examples = []
    for prompt, answer in corpus(prompts, 2000, seed):
        context = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                return_dict=False)
        full = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": answer}], return_dict=False)
        examples.append((full, len(context)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        batch = rng.sample(examples, 16)
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.zeros((len(batch), width), dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        predicts = torch.zeros((len(batch), width), dtype=torch.bool)  # positions whose next token is answer
        for row, (ids, prompt_length) in enumerate(batch):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention[row, :len(ids)] = 1
            predicts[row, prompt_length - 1:len(ids) - 1] = True
        hidden = model.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
        # The vocabulary projection only where the loss is taken: the answer is a fifth of the tokens.
        logits = model.lm_head(hidden[predicts])
        targets = input_ids[:, 1:][predicts[:, :-1]]
        loss = torch.nn.functional.cross_entropy(logits, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    _save_checkpoint(model, tokenizer, out_dir, marker={"tiny_chat_version": VERSION, "steps": steps,
                                                              "loss": round(float(loss.detach()), 4)})
    return out_dir
