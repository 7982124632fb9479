"""scripts/api_schema_check.sh counts a finding for every failure and error of the fuzzer, except the
one fault of CPython 3.11's ast.parse inside hypothesis (gh-106905), which says nothing about the API."""

import subprocess

from bench.processes import ROOT

SUMMARY = """=================================== SUMMARY ====================================

Test Phases:
  🚫 Coverage
  ✅ Fuzzing
{failures}
Errors:
  🚫 Runtime Error: {errors}

Warnings:
  ⚠️ Missing test data: 16 operations repeatedly returned 404 responses
"""
FAULT = "    SystemError: AST constructor recursion depth mismatch (before=66, after=92)\n"


def only_tool_fault(path) -> bool:
    script = ROOT / "scripts" / "api_schema_check.sh"
    command = f"source <(sed -n '/^only_tool_fault() {{/,/^}}/p' {script}); only_tool_fault {path}"
    return subprocess.run(["bash", "-c", command], check=False).returncode == 0


def report(tmp_path, *, faults: int, errors: int, failures: str = "", other: str = ""):
    path = tmp_path / "report.txt"
    path.write_text("ERRORS\n" + FAULT * faults + other + SUMMARY.format(failures=failures, errors=errors))
    return path


def test_only_the_cpython_ast_fault_is_left_out(tmp_path):
    assert only_tool_fault(report(tmp_path, faults=1, errors=1))
    # A failure, another error beside the fault, or another error alone: a finding.
    assert not only_tool_fault(report(tmp_path, faults=1, errors=1, failures="\nFailures:\n  ❌ Server error: 1\n"))
    assert not only_tool_fault(report(tmp_path, faults=1, errors=2, other="    ValueError: boom\n"))
    assert not only_tool_fault(report(tmp_path, faults=0, errors=1, other="    ValueError: boom\n"))
