"""Translation catalogs of scheduler_app and the demo project: extract, compile, check.

    python tools/messages.py update   # makemessages + compile .mo + list untranslated (exit 1 if any)
    python tools/messages.py check    # CI: the same on a temporary copy; the tree is not touched;
                                      # exit 1 if makemessages would add a msgid without a
                                      # translation or a committed .mo differs from its .po

``./dev messages`` runs ``update``. It configures a minimal Django itself (no project
settings), so it can run before anything else is set up. Needs GNU gettext (``msgfmt``,
``xgettext``: Debian package ``gettext``).
"""

from __future__ import annotations

import gettext
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ["zh_Hans"]
# (directory makemessages runs in, the catalog directory it fills, extra --ignore patterns)
CATALOGS = [
    ("scheduler_app", "scheduler_app/locale", ["static"]),
    (".", "project/locale", ["scheduler_app", "tests", "bench", "docs", "var", "tools", "build"]),
]
COPIED = ["scheduler_app", "project", "templates"]


def _makemessages(root: Path) -> None:
    """Run Django's makemessages for every catalog under root, in a child process so the
    minimal settings (LOCALE_PATHS pointing into root) cannot leak into the caller."""
    for cwd, locale, ignores in CATALOGS:
        (root / locale).mkdir(parents=True, exist_ok=True)
        code = (
            "import sys, django; from django.conf import settings; "
            "settings.configure(USE_I18N=True, LOCALE_PATHS=[sys.argv[1]]); django.setup(); "
            "from django.core.management import call_command; "
            "call_command('makemessages', locale=sys.argv[2].split(','), ignore_patterns=sys.argv[3:], "
            "no_obsolete=True, add_location='file', verbosity=0)"
        )
        subprocess.run(
            [sys.executable, "-c", code, str(root / locale), ",".join(LANGUAGES), *ignores],
            cwd=root / cwd,
            check=True,
        )


def _po_files(root: Path) -> list[Path]:
    return [
        root / locale / lang / "LC_MESSAGES" / "django.po" for _, locale, _ in CATALOGS for lang in LANGUAGES
    ]


def _compile(po: Path, mo: Path) -> None:
    subprocess.run(["msgfmt", "--check-format", "-o", str(mo), str(po)], check=True)


def _catalog(mo: Path) -> dict[object, str]:
    with mo.open("rb") as fh:
        return dict(gettext.GNUTranslations(fh)._catalog)  # type: ignore[attr-defined]


def untranslated(po: Path) -> list[str]:
    """msgids of po without a usable translation (empty or fuzzy)."""
    import polib

    return [e.msgid for e in polib.pofile(str(po)) if not e.translated() and not e.obsolete]


def update() -> int:
    _makemessages(ROOT)
    missing = 0
    for po in _po_files(ROOT):
        _compile(po, po.with_suffix(".mo"))
        for msgid in untranslated(po):
            missing += 1
            print(f"untranslated in {po.relative_to(ROOT)}: {msgid!r}")
    print(f"{missing} untranslated message(s)." if missing else "Every message is translated.")
    return 1 if missing else 0


def check() -> list[str]:
    """Problems (empty list: all good), computed on a temporary copy of the tree."""
    import polib

    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        for name in COPIED:
            shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _makemessages(copy)
        for committed, extracted in zip(_po_files(ROOT), _po_files(copy), strict=True):
            rel = committed.relative_to(ROOT)
            if not committed.exists():
                problems.append(f"{rel} is missing")
                continue
            known = {(e.msgctxt, e.msgid): e for e in polib.pofile(str(committed)) if e.translated()}
            for e in polib.pofile(str(extracted)):
                if (e.msgctxt, e.msgid) not in known:
                    problems.append(f"{rel}: no translation for {e.msgid!r}")
            mo = committed.with_suffix(".mo")
            fresh = copy / "fresh.mo"
            _compile(committed, fresh)
            if not mo.exists() or _catalog(mo) != _catalog(fresh):
                problems.append(f"{mo.relative_to(ROOT)} does not match its .po (run ./dev messages)")
    return problems


def main(argv: list[str]) -> int:
    if argv[1:] == ["update"]:
        return update()
    if argv[1:] == ["check"]:
        problems = check()
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s)." if problems else "Catalogs complete and compiled.")
        return 1 if problems else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
