"""What the run store hands the engine to mask: every revealed secret value as it is
(numbers, lists, objects and short ones too), and a run-now override of a secret."""

import pytest

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.redaction import MASK, Redactor
from scheduler_app.models import Job, JobRun

pytestmark = pytest.mark.django_db

SECRETS = {
    "pin": 9876543210,
    "cfg": {"hosts": ["db-α.internal"], "port": 6543},
    "pw": "Pässwörd-Ω",
    "k": "ab",
}


def test_every_secret_value_is_handed_over_as_it_is(make_job):
    job = make_job("mailer", task="tests.leak_secrets", secret_kwargs=SECRETS)
    run = services.run_jobs_now([job]).done[0]
    claimed = DjangoRunStore._claimed(run, Job.objects.get(pk=job.pk))
    assert sorted(map(repr, claimed.secret_values)) == sorted(map(repr, SECRETS.values()))
    redactor = Redactor(claimed.secret_values)
    assert redactor.value({"r": [9876543210, "db-α.internal", "ab", "abc", 6543, SECRETS["cfg"]]}) == {
        "r": [MASK, MASK, MASK, "abc", MASK, MASK]
    }
    assert redactor.text(f"connect {SECRETS['cfg']!r} as ab") == f"connect {MASK} as ab"


def test_a_run_now_cannot_override_a_secret(make_job):
    """The override is kept with the run in clear (run page, backups with runs): a
    secret's value may only come from the job's encrypted secret kwargs."""
    job = make_job("mailer", task="tests.leak_secrets", secret_kwargs={"pw": "stored-secret"})
    result = services.run_jobs_now([job], kwargs_override={"pw": "typed-in-secret", "n": "public"})
    assert not result.done and not JobRun.objects.filter(job=job).exists()
    assert result.refused[0][1] == (
        "kwargs override: pw: a secret of this job; a run cannot override it (change the job's secret kwargs)"
    )
    assert services.run_jobs_now([job], kwargs_override={"n": "public"}).done  # others still may


def test_an_older_runs_override_of_a_secret_is_masked_too(make_job):
    """A run queued before overrides of secrets were refused may still hold one."""
    from django.utils import timezone

    from scheduler_app.services.runs import enqueue_run

    job = make_job("mailer", task="tests.leak_secrets", secret_kwargs={"pw": "stored-secret"})
    run = enqueue_run(
        job, scheduled_for=timezone.now(), kwargs_override={"pw": "typed-in-secret", "n": "public"}
    )
    claimed = DjangoRunStore._claimed(run, Job.objects.get(pk=job.pk))
    assert claimed.kwargs["pw"] == "typed-in-secret"
    assert set(claimed.secret_values) == {"stored-secret", "typed-in-secret"}
