"""The repository's documents stand on their own: no paths of the machine they were written on, no
notes or files outside the repository, and every docs/*.md they name exists."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ["README.md", "Makefile", "docs", "bench", "pac_ros", "scripts", "config", "launch", "models", "msg"]
TEXT = {".md", ".py", ".yaml", ".yml", ".xml", ".msg", ".txt", ""}
FORBIDDEN = {
    "a path into the shared folder": re.compile(r"shared/docs|\.\./shared"),
    "an absolute path of the work machine": re.compile(r"/work/"),
    "a resolving note": re.compile(r"resolving note", re.I),
    "an issue number": re.compile(r"\bissues? #?\d", re.I),
    "a document outside the repository": re.compile(r"PAC_NOTES|DESIGN\.md|ENVIRONMENT\.md"),
}


def text_files():
    for name in SCANNED:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            if f.suffix in TEXT and "__pycache__" not in f.parts:
                yield f


def test_documents_cite_nothing_outside_the_repository():
    found = []
    for f in text_files():
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            found += [f"{f.relative_to(ROOT)}:{n}: {what}: {line.strip()[:100]}"
                      for what, pattern in FORBIDDEN.items() if pattern.search(line)]
    assert not found, "\n".join(found)


def test_named_docs_exist():
    files = list(text_files())
    assert any(f.name == "design.md" for f in files) and any(f.name == "method.md" for f in files)
    named = {m for f in files for m in re.findall(r"docs/[\w-]+\.md", f.read_text(errors="replace"))}
    assert {"docs/design.md", "docs/method.md"} <= named  # README points to them
    assert sorted(n for n in named if not (ROOT / n).is_file()) == []


def test_the_check_sees_what_it_forbids():
    samples = ["see /work/shared/docs/DESIGN.md", "the resolving notes of issues 2 and 4", "(issue 6)", "PAC_NOTES"]
    assert all(any(p.search(s) for p in FORBIDDEN.values()) for s in samples)
    assert not any(p.search("docs/design.md, section 3; tissue 5") for p in FORBIDDEN.values())
