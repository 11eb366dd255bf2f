"""The docs' file tables and lists are the table's (drift check), and so are the help texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube_lxcfs import files_text
from kube_lxcfs.files import FILES, INJECTED_FILES

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([*REPO.glob("docs/*.md"), REPO / "README.md"])


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_generated_parts_of_the_docs_are_current(doc: Path) -> None:
    text = doc.read_text()
    assert files_text.refresh(text) == text, (
        f"{doc.relative_to(REPO)} is stale: python -m kube_lxcfs.files_text --write docs/*.md"
    )


def test_the_docs_carry_the_table_and_the_default_lists() -> None:
    marked = {d.name: files_text.MARKER.findall(d.read_text()) for d in DOCS}
    assert ("table", files_text.GENERATED["table"]()) in marked["filesystem.md"]
    for name in ("webhook.md", "kubernetes.md", "runtime.md", "run.md"):
        assert marked[name], f"{name} lists the default files by hand"
    table = files_text.markdown_table()
    assert all(f"`{f.path}`" in table for f in FILES)


def test_stale_docs_are_reported_and_refreshed(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("default: <!-- files:injected -->`proc/meminfo`<!-- /files -->\n")
    assert files_text.main(["--check", str(doc)]) == 1
    assert files_text.main(["--write", str(doc)]) == 0
    assert ",".join(INJECTED_FILES) in doc.read_text()
    assert files_text.main(["--check", str(doc)]) == 0


def test_help_texts_list_the_tables_files() -> None:
    from kube_lxcfs.commands import fs, run

    for f in FILES:
        if f.path.count("/") == 2 and f.path.startswith("/proc/"):
            assert f.path.rsplit("/", 1)[1] in fs.DESCRIPTION
    injected = [p.removeprefix("proc/") for p in INJECTED_FILES if p.startswith("proc/")]
    assert "/proc/{" + ",".join(injected) + "}" in run.DESCRIPTION
