"""No function or class of Tandem is referenced only by the tests, or by nothing (scripts/dead_code.py,
vulture): the check holds the tree, and it finds what it is for."""

import importlib.util

from bench.processes import ROOT

spec = importlib.util.spec_from_file_location("dead_code", ROOT / "scripts" / "dead_code.py")
dead_code = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dead_code)


def test_the_tree_has_no_dead_code():
    assert dead_code.findings() == []


def test_the_check_finds_what_only_tests_or_nothing_reference(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "app" / "code.py").write_text(
        "import functools\n\n"
        "def used():\n    return 1\n\n"
        "def oracle():\n    return 2\n\n"
        "def forgotten():\n    return 3\n\n"
        "class Hooked:\n    pass\n\n"
        "@functools.cache\ndef registered():\n    return 4\n\n"
        "SETTING = 'app.code.Hooked'\n"
        "print(used())\n")
    (tmp_path / "tests" / "test_code.py").write_text("from app.code import oracle\n\nassert oracle() == 2\n")
    found = dead_code.findings(tmp_path, ["app"], ["tests"])
    assert sorted(found) == ["app/code.py:6: function 'oracle' is referenced only by tests",
                             "app/code.py:9: function 'forgotten' is referenced nowhere"]
