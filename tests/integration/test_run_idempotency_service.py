"""Run-now with an idempotency key, called as a service (no API in between): a retried
call with the same key queues nothing and answers the first run; a refused call leaves
no key behind; the key is per job."""

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import JobRun, RunRequest

pytestmark = pytest.mark.django_db


def test_the_same_key_answers_the_first_run(make_job):
    job = make_job("a")
    first = services.run_jobs_now([job], idempotency_key="deploy-42")
    again = services.run_jobs_now([job], idempotency_key="deploy-42")
    assert (first.replayed, again.replayed) == (False, True)
    assert first.done[0].pk == again.done[0].pk
    assert JobRun.objects.count() == 1
    assert RunRequest.objects.get().run_id == first.done[0].pk
    other = services.run_jobs_now([job], idempotency_key="deploy-43")
    assert not other.replayed and other.done[0].pk != first.done[0].pk
    assert JobRun.objects.count() == 2


def test_a_key_is_per_job(make_job):
    a, b = make_job("a"), make_job("b")
    ra = services.run_jobs_now([a], idempotency_key="k")
    rb = services.run_jobs_now([b], idempotency_key="k")
    assert not rb.replayed and ra.done[0].job_id == a.pk and rb.done[0].job_id == b.pk


def test_a_refused_call_does_not_keep_its_key(make_job):
    job = make_job("a")
    services.disable_jobs([job])
    job.refresh_from_db()
    refused = services.run_jobs_now([job], idempotency_key="k")
    assert not refused.done and refused.refused[0].kind == "conflict"
    assert not RunRequest.objects.exists() and not JobRun.objects.exists()
    services.enable_jobs([job])
    job.refresh_from_db()
    assert services.run_jobs_now([job], idempotency_key="k").done[0] is not None


def test_a_call_that_raises_does_not_keep_its_key(make_job):
    job = make_job("a")
    with pytest.raises(ValidationError):
        services.run_jobs_now([job], idempotency_key="k", at=timezone.now().replace(tzinfo=None))
    assert not RunRequest.objects.exists()


@pytest.mark.parametrize("key", ["", "x" * 201, 7])
def test_a_bad_key_is_a_field_error(make_job, key):
    job = make_job("a")
    with pytest.raises(ValidationError) as info:
        services.run_jobs_now([job], idempotency_key=key)
    assert "idempotency_key" in info.value.message_dict
    assert not JobRun.objects.exists()


def test_a_key_is_for_one_job(make_job):
    with pytest.raises(ValueError):
        services.run_jobs_now([make_job("a"), make_job("b")], idempotency_key="k")
