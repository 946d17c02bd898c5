"""The package installs from its wheel into a fresh virtualenv and works in a brand-new
Django project: migrate and check pass, migrations and templates are shipped, the demo
project and the tests are not.

Builds the wheel from a copy of the checkout (so build artefacts never land in it) and
installs dependencies from PyPI through pip's normal cache."""

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "var",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "*.sqlite3",
)
TEMPLATE = "admin/scheduler_app/job/move_to_group.html"
APPS = ["django_apscheduler", "guardian", "auditlog", "scheduler_app"]


def clean_env():
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "DATABASE_URL")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(*cmd, cwd, timeout=300):
    result = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src") / "checkout"
    shutil.copytree(ROOT, src, ignore=IGNORED)
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, src, cwd=src)
    wheels = list(dist.glob("django_scheduler_app-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory):
    """A fresh virtualenv with the wheel installed and a new project using the app."""
    base = tmp_path_factory.mktemp("site")
    env_dir = base / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", wheel, cwd=base, timeout=600)
    # "site" itself would clash with Python's site module, which startproject refuses.
    run(env_dir / "bin" / "django-admin", "startproject", "mysite", cwd=base)
    project = base / "mysite"
    settings = project / "mysite" / "settings.py"
    with settings.open("a") as fh:
        fh.write(
            f"\nINSTALLED_APPS += {APPS!r}\n"
            "AUTHENTICATION_BACKENDS = [\n"
            "    'django.contrib.auth.backends.ModelBackend',\n"
            "    'guardian.backends.ObjectPermissionBackend',\n"
            "]\n"
        )
    return python, project


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "scheduler_app/migrations/0001_initial.py" in names
    assert "scheduler_app/migrations/__init__.py" in names
    assert f"scheduler_app/templates/{TEMPLATE}" in names
    assert "scheduler_app/management/commands/importjobs.py" in names
    assert "scheduler_app/engine/triggerspec.py" in names
    distribution, version = wheel.name.split("-")[:2]
    top = {name.split("/")[0] for name in names}
    assert top == {"scheduler_app", f"{distribution}-{version}.dist-info"}
    assert not any(name.startswith(("project/", "tests/", "bench/")) for name in names)


def test_fresh_project_migrates_and_checks(site):
    python, project = site
    out = run(python, "manage.py", "migrate", "--no-input", cwd=project)
    assert "Applying scheduler_app.0001_initial... OK" in out
    out = run(python, "manage.py", "check", "--fail-level", "WARNING", cwd=project)
    assert "System check identified no issues" in out
    out = run(python, "manage.py", "makemigrations", "--check", "--dry-run", "scheduler_app", cwd=project)
    assert "No changes detected" in out
    out = run(python, "manage.py", "exportjobs", cwd=project)
    assert json.loads(out) == {
        "version": 1,
        "tenants": [],
        "groups": [],
        "calendars": [],
        "jobs": [],
        "alert_channels": [],
        "alert_rules": [],
    }


def test_installed_package_has_migrations_and_templates_but_not_the_demo(site):
    python, project = site
    script = (
        "import importlib.util, json, pathlib, django\n"
        "django.setup()\n"
        "import scheduler_app\n"
        "from django.template.loader import get_template\n"
        "pkg = pathlib.Path(scheduler_app.__file__).parent\n"
        "print(json.dumps({\n"
        "  'package': str(pkg),\n"
        "  'migrations': sorted(p.name for p in (pkg / 'migrations').glob('0*.py')),\n"
        f"  'template': get_template({TEMPLATE!r}).origin.name,\n"
        "  'project': importlib.util.find_spec('project') is not None,\n"
        "  'tests': importlib.util.find_spec('tests') is not None,\n"
        "}))\n"
    )
    env_site = Path(python).parent.parent
    # Run from the new project (outside any checkout), with its settings.
    out = subprocess.run(
        [str(python), "-c", script],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean_env(), "DJANGO_SETTINGS_MODULE": "mysite.settings"},
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    package = Path(found["package"])
    assert package.is_relative_to(env_site), found
    assert "site-packages" in package.parts
    assert found["migrations"] == sorted(
        p.name for p in (ROOT / "scheduler_app" / "migrations").glob("0*.py")
    )
    assert Path(found["template"]) == package / "templates" / TEMPLATE
    assert found["project"] is False and found["tests"] is False
