"""A taste a user brings to the loop benchmark as one JSON bundle (--taste): preference function,
prompts, prompt suffix, thresholds and noise, each checked before anything runs."""

import json

import pytest

from annotation.workspace.simulation import load_callable
from bench.loop_efficacy import PROMPTS_FILE, parse_args
from bench.loop_profiles import PROFILES

EXAMPLE = PROMPTS_FILE.parents[1] / "tastes" / "plain-words" / "taste.json"


def test_the_example_bundle_sets_the_taste_and_flags_win_over_it():
    options = parse_args(["--profile", "cpu", "--taste", str(EXAMPLE)])
    assert options.profile.prompt_suffix == " Explain it in plain words."
    assert options.profile.thresholds == (1.5, 1.0, 0.5) and options.profile.noise == 0.1
    assert options.preference.endswith("plain-words/taste.py:plain_words")
    preference = load_callable(options.preference)
    assert preference([], "an extraordinarily complicated explanation") == pytest.approx(-0.9)
    assert preference([], "") == -10.0
    assert options.prompts == parse_args(["--profile", "cpu"]).prompts
    # The flags win over the bundle; the profile fills what neither gives.
    flagged = parse_args(["--profile", "cpu", "--taste", str(EXAMPLE), "--prompt-suffix", "", "--noise", "0.3",
                          "--thresholds", "2,1,0.1"])
    assert flagged.profile.prompt_suffix == "" and flagged.profile.noise == 0.3
    assert flagged.profile.thresholds == (2.0, 1.0, 0.1)
    assert flagged.profile.judgements == PROFILES["cpu"].judgements


def test_a_bundle_of_its_own_folder_with_a_dotted_path(tmp_path):
    (tmp_path / "prompts.txt").write_text("One?\nTwo?\n\nThree?\n")
    (tmp_path / "taste.json").write_text(json.dumps({
        "preference": "bench.loop_profiles.concise_preference", "prompts": "prompts.txt"}))
    options = parse_args(["--profile", "tiny", "--taste", str(tmp_path / "taste.json")])
    assert options.prompts == ("One?", "Two?", "Three?")
    assert options.preference == "bench.loop_profiles.concise_preference"
    assert options.profile.prompt_suffix == PROFILES["tiny"].prompt_suffix


@pytest.mark.parametrize(("bundle", "reason"), [
    ({"preference": "taste.py:nothing_here"}, "has no 'nothing_here'"),
    ({"preference": "missing.py:f"}, "Cannot load"),
    ({"preference": "taste.py:two_arguments_missing"}, "must take (context, response)"),
    ({"prompts": "empty.txt"}, "holds no prompt"),
    ({"thresholds": [0.2, 0.5, 1.0]}, "three decreasing score gaps"),
    ({"noise": -1}, "noise is a number ≥ 0"),
    ({"prompt_suffix": 3}, "prompt_suffix is text"),
    ({"taste": "concision"}, "a taste gives preference, prompts"),
    ([], "is a JSON object"),
])
def test_a_bad_bundle_is_refused_with_the_reason(tmp_path, capsys, bundle, reason):
    (tmp_path / "taste.py").write_text("def two_arguments_missing():\n    return 0\n")
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "taste.json").write_text(json.dumps(bundle))
    with pytest.raises(SystemExit) as refused:
        parse_args(["--profile", "tiny", "--taste", str(tmp_path / "taste.json")])
    assert refused.value.code == 2 and reason in capsys.readouterr().err


def test_a_taste_file_may_define_dataclasses(tmp_path):
    (tmp_path / "taste.py").write_text(
        "from __future__ import annotations\nfrom dataclasses import dataclass\n\n\n@dataclass\nclass Weights:\n"
        "    per_word: float = -0.1\n\n\ndef brief(context, response):\n"
        "    return Weights().per_word * len(response.split())\n")
    (tmp_path / "taste.json").write_text(json.dumps({"preference": "taste.py:brief"}))
    options = parse_args(["--profile", "tiny", "--taste", str(tmp_path / "taste.json")])
    assert load_callable(options.preference)([], "two words") == pytest.approx(-0.2)
