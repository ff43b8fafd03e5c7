"""The project speaks of itself, for its users: no words about its own making in any file."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Words about how the project was made, not what it is: a first person, issue numbers, the
# sessions or turns of its making, a figure dated by its writing.
SELF_REFERENCE = re.compile(
    r"(?<![\w\"'`])I(?= (?:am|was|did|do|kept|chose|measured|found|used|ran|made|think|tried|left|changed|have|had|"
    r"added|moved|wrote|fixed|removed)\b)|(?<![\w\"'`])I(?:'m|'ve|'d)\b"
    r"|\b[Ii]ssues? ?#?\d+|\bthis (?:session|turn|stop)\b|\bat the time of writing\b|\bwhen this was written\b")
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".cfg", ".txt", ".ipynb", ".csv", ".html", ".js", ""}


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode:
        pytest.skip("not a git checkout: the tracked files are unknown")
    paths = [ROOT / line for line in listed.stdout.splitlines()]
    return [p for p in paths if p.is_file() and p.suffix in TEXT_SUFFIXES and p != Path(__file__).resolve()]


def test_no_file_speaks_of_the_projects_own_making():
    found = []
    for path in _tracked_text_files():
        if path.name == "CHANGELOG.md":  # history belongs there, still without a first person
            text = re.sub(r"\b[Ii]ssues? ?#?\d+", "", path.read_text(errors="replace"))
        else:
            text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if SELF_REFERENCE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("line", ["I kept 8 of them", "as I've said", "see issue 24", "closes issue #3",
                                  "measured in this session", "at the time of writing"])
def test_the_self_reference_check_catches_such_words(line):
    assert SELF_REFERENCE.search(line)


@pytest.mark.parametrize("line", ['select = ["E", "F", "W", "I", "B"]', "Figure I shows", "grade I or II",
                                  "the issue of leakage", "IL-6 in pg/mL"])
def test_the_self_reference_check_leaves_other_words(line):
    assert not SELF_REFERENCE.search(line)


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d",
                           str(site)], capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_docs_site_builds_strictly_and_a_broken_link_would_fail_it(tmp_path):
    built = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert built.returncode == 0, built.stderr[-2000:]
    assert (tmp_path / "site" / "api" / "index.html").read_text().count("weighted_auroc") > 0  # from the docstrings
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with open(tmp_path / "docs" / "index.md", "a") as page:
        page.write("\nSee [a page that is not there](nowhere.md).\n")
    assert _build(tmp_path / "mkdocs.yml", tmp_path / "broken").returncode != 0


def test_the_readme_is_short_and_its_make_targets_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    targets = set(re.findall(r"(?m)^([a-z][a-z-]*):", (ROOT / "Makefile").read_text()))
    named = set(re.findall(r"\bmake ([a-z][a-z-]*)", readme))
    assert named and named <= targets, named - targets
