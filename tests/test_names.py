"""Every name the product code uses is defined: a rename that missed one use fails here, before a
worker meets it at run time (pyflakes reads the code; nothing is imported or run)."""
from __future__ import annotations

from pathlib import Path

from pyflakes import api, messages
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("webapp", "jobs", "bench", "scripts", "tests", "wsgi.py")
BROKEN = (messages.UndefinedName, messages.UndefinedLocal, messages.UndefinedExport,
          messages.ImportStarUsage)


class Collect(Reporter):
    def __init__(self):
        super().__init__(None, None)
        self.found = []

    def flake(self, message):
        if isinstance(message, BROKEN):
            self.found.append(str(message))

    def syntaxError(self, filename, msg, lineno, offset, text):
        self.found.append(f"{filename}:{lineno}: {msg}")

    def unexpectedError(self, filename, msg):
        self.found.append(f"{filename}: {msg}")


def test_no_name_is_used_that_is_not_defined():
    report = Collect()
    for part in CHECKED:
        api.checkRecursive([str(ROOT / part)], report)
    assert report.found == []


def test_the_check_sees_an_undefined_name(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def f():\n    return TERMINAL\n")
    report = Collect()
    api.checkRecursive([str(broken)], report)
    assert len(report.found) == 1 and "TERMINAL" in report.found[0]
