"""The README answers, docs/ explains: the README stays short, and no link of either leads nowhere.

Links are checked as GitHub renders them: a relative target must be a file or folder of the project, and
a `#fragment` must be a heading of the page it names (GitHub's anchors: lower case, punctuation dropped,
spaces as hyphens, a repeated heading numbered `-1`, `-2`). Links inside code blocks and code spans are
text, not links. tests/test_readme.py runs the pages' commands.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+).+?\1")


def prose(text: str) -> str:
    """The text outside fenced code blocks, code spans blanked."""
    kept, fenced = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        kept.append("" if fenced else CODE_SPAN.sub("", line))
    return "\n".join(kept)


def links(text: str) -> list[str]:
    return LINK.findall(prose(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())  # a link keeps its text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    found, seen = set(), {}
    for line in prose_with_headings(text):
        base = slug(line)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def prose_with_headings(text: str) -> list[str]:
    headings, fenced = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+?)\s*#*\s*$", line)):
            headings.append(m.group(1))
    return headings


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not this project's files
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / unquote(path)).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading '{fragment}' in {dest.name}")
    return broken


# --- the checks themselves, on text written for them -----------------------------------------------------

def test_links_and_anchors_are_read_as_github_renders_them():
    text = ("# Which GPU: `--target-gpu` and `wavemix-profile gpus`\n## Peak memory\n## Peak memory\n"
            "See [a](docs/x.md#y), ![img](../r/a.png \"title\") and [site](https://e.org).\n"
            "`[not](a link)`\n```\n[also not](code.md)\n# not a heading\n```\n")
    assert links(text) == ["docs/x.md#y", "../r/a.png", "https://e.org"]
    assert anchors(text) == {"which-gpu---target-gpu-and-wavemix-profile-gpus", "peak-memory", "peak-memory-1"}
    assert slug("Five questions, one command each") == "five-questions-one-command-each"
    assert slug("1. What is the largest batch of my model on my GPU?") == (
        "1-what-is-the-largest-batch-of-my-model-on-my-gpu")


def test_a_missing_file_or_heading_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n## Here\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/a.md#here) [gone](docs/b.md) [wrong](docs/a.md#there) [self](#top)\n# Top\n",
                    encoding="utf-8")
    found = broken_links(page)
    assert [line.split(":")[0] for line in found] == ["docs/b.md", "docs/a.md#there"]


# --- the project's pages ---------------------------------------------------------------------------------

def test_the_readme_is_short():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move explanations into docs/"


def test_the_readme_links_every_page_of_docs():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README.read_text("utf-8"))}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_somewhere(page):
    assert broken_links(page) == []


def test_the_top_level_help_has_examples():
    run = subprocess.run([sys.executable, "-m", "wavemix_profile", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0
    examples = run.stdout.split("examples:", 1)[1]
    assert examples.count("wavemix-profile ") >= 3
