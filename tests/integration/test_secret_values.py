"""What the run store hands the engine to mask: every revealed secret value as it is
(numbers, lists, objects and short ones too), and a run-now override of a secret."""

import pytest

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.redaction import MASK, Redactor
from scheduler_app.models import Job

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


def test_an_override_of_a_secret_is_masked_too(make_job):
    job = make_job("mailer", task="tests.leak_secrets", secret_kwargs={"pw": "stored-secret"})
    run = services.run_jobs_now([job], kwargs_override={"pw": "typed-in-secret", "n": "public"}).done[0]
    claimed = DjangoRunStore._claimed(run, Job.objects.get(pk=job.pk))
    assert claimed.kwargs["pw"] == "typed-in-secret"
    assert set(claimed.secret_values) == {"stored-secret", "typed-in-secret"}
