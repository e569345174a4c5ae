"""The README is a short front door whose every link resolves: each relative link names a file of this repository and,
with a #fragment, a heading of that page (as MkDocs' toc extension makes its anchors)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import code_blocks

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def anchors(page: Path) -> set[str]:
    """The heading anchors of a markdown page: lower-cased, punctuation dropped, spaces as hyphens (toc's slugify)."""
    text = page.read_text()
    for _, body in code_blocks(text):  # a '# comment' inside a code block is no heading
        text = text.replace(body, "")
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)
    return {re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", h.replace("`", "")).strip().lower()) for h in headings}


def test_every_readme_link_resolves() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    assert len(local) >= 10  # the front door links into the documentation
    for link in local:
        path, _, fragment = link.partition("#")
        target = (ROOT / path) if path else README
        assert target.exists(), f"README links to {link}, which does not exist"
        if fragment:
            assert fragment in anchors(target), f"README links to {link}: {path} has no heading #{fragment}"


def test_the_readme_is_a_front_door() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for must in ("make demo", "make test", "make docs", "## Dependencies and why", "pd.read_parquet"):
        assert must in text
