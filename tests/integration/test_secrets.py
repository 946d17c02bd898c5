"""Secret kwargs: ciphertext at rest, masked everywhere, decrypted only for the run,
rotated with rotatekeys."""

import pytest
from auditlog.models import LogEntry
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from scheduler_app import crypto, services
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.models import Job
from tests.settings import TEST_KEYS

pytestmark = pytest.mark.django_db

SECRET = "hunter2-very-secret"


@pytest.fixture
def secret_job(make_job):
    return make_job("mailer", task="demo.echo", kwargs={"to": "ops"}, secret_kwargs={"password": SECRET})


def raw_row(job):
    with connection.cursor() as cur:
        cur.execute(
            "SELECT secrets_token, secret_names, secret_fingerprints FROM scheduler_app_job WHERE id = %s",
            [job.pk],
        )
        return cur.fetchone()


def test_the_database_holds_only_ciphertext(secret_job):
    token, names, fingerprints = raw_row(secret_job)
    assert SECRET not in token and SECRET not in str(names) and SECRET not in str(fingerprints)
    assert Fernet(TEST_KEYS[0]).decrypt(token.encode()) == b'{"password": "hunter2-very-secret"}'
    assert "password" in str(names)


def test_masked_in_the_model_revealed_on_request(secret_job):
    job = Job.objects.get(pk=secret_job.pk)
    assert job.secret_kwargs == {"password": "••••••"}
    assert job.reveal_secret_kwargs() == {"password": SECRET}


def test_never_in_audit_entries_or_versions(secret_job):
    services.save_job(Job.objects.get(pk=secret_job.pk) | _set(secret_kwargs={"password": "rotated-pass"}))
    text = " ".join(str(e.changes) + str(e.additional_data) for e in LogEntry.objects.all())
    assert SECRET not in text and "rotated-pass" not in text
    assert "secret_fingerprints" in text  # the change itself is visible
    versions = list(secret_job.versions.order_by("number"))
    assert len(versions) == 2
    assert SECRET not in str(versions[0].snapshot)
    assert versions[0].snapshot["secret_fingerprints"] != versions[1].snapshot["secret_fingerprints"]


def _set(**fields):
    class Setter:
        def __ror__(self, job):
            for k, v in fields.items():
                setattr(job, k, v)
            return job

    return Setter()


def test_decrypted_only_for_the_claimed_run(secret_job):
    run = services.run_jobs_now([secret_job]).done[0]
    claimed = DjangoRunStore._claimed(run, Job.objects.get(pk=secret_job.pk))
    assert claimed.kwargs == {"to": "ops", "password": SECRET}
    assert claimed.setup_error is None
    assert SECRET not in repr(claimed)


def test_a_secret_no_key_decrypts_fails_the_run_not_the_scheduler(secret_job):
    other = Fernet.generate_key().decode()
    with override_settings(SCHEDULER_APP={"ENCRYPTION_KEYS": [other]}):
        run = services.run_jobs_now([secret_job]).done[0]
        claimed = DjangoRunStore._claimed(run, Job.objects.get(pk=secret_job.pk))
    assert claimed.setup_error.startswith("secret kwargs: the secret kwargs cannot be decrypted")
    assert claimed.kwargs == {}


def test_secret_values_are_masked_in_what_a_run_reports():
    from datetime import UTC, datetime

    from scheduler_app.engine.executors import ThreadExecutor
    from scheduler_app.engine.interfaces import ClaimedRun

    outcomes = []

    def leaky(password):
        raise RuntimeError(f"login failed for password {password}")

    executor = ThreadExecutor(1, {"leaky": leaky}.__getitem__, outcomes.append, 1000)
    executor.submit(
        ClaimedRun(
            run_id=1,
            job_id=1,
            job_name="j",
            task="leaky",
            args=(),
            kwargs={"password": SECRET},
            executor="thread",
            attempt=1,
            scheduled_for=datetime.now(UTC),
            secret_values=(SECRET,),
        )
    )
    executor.shutdown(wait=True)
    assert SECRET not in outcomes[0].error and SECRET not in outcomes[0].traceback
    assert "login failed for password ••••••" in outcomes[0].error


class TestRotateKeys:
    def test_rotation_re_encrypts_with_the_newest_key(self, make_job, capsys):
        old, new = TEST_KEYS[0], Fernet.generate_key().decode()
        jobs = [make_job(f"j{i}", task="demo.echo", secret_kwargs={"token": f"t{i}"}) for i in range(5)]
        with override_settings(SCHEDULER_APP={"ENCRYPTION_KEYS": [new, old]}):
            call_command("rotatekeys", "--batch-size", "2")
            for job in jobs:
                token = raw_row(job)[0]
                assert Fernet(new).decrypt(token.encode())  # newest key alone reads it
            out = capsys.readouterr()
            assert "Re-encrypted 5 job(s); 0 already used the newest key." in out.out
            assert "5/5 jobs with secrets checked" in out.err
            # re-running is safe and does nothing
            call_command("rotatekeys")
            assert "Re-encrypted 0 job(s); 5 already used the newest key." in capsys.readouterr().out
        with override_settings(SCHEDULER_APP={"ENCRYPTION_KEYS": [new]}):
            assert [Job.objects.get(pk=j.pk).reveal_secret_kwargs() for j in jobs] == [
                {"token": f"t{i}"} for i in range(5)
            ]
        assert LogEntry.objects.filter(additional_data__operation="rotate_keys").exists()

    def test_interrupted_rotation_is_finished_by_a_rerun(self, make_job):
        old, new = TEST_KEYS[0], Fernet.generate_key().decode()
        jobs = [make_job(f"j{i}", task="demo.echo", secret_kwargs={"token": f"t{i}"}) for i in range(4)]
        with override_settings(SCHEDULER_APP={"ENCRYPTION_KEYS": [new, old]}):
            # half done, as if the process had been killed after the first batch
            for job in jobs[:2]:
                Job.objects.filter(pk=job.pk).update(secrets_token=crypto.rotate(raw_row(job)[0]))
            call_command("rotatekeys")
        with override_settings(SCHEDULER_APP={"ENCRYPTION_KEYS": [new]}):
            assert [Job.objects.get(pk=j.pk).reveal_secret_kwargs()["token"] for j in jobs] == [
                "t0",
                "t1",
                "t2",
                "t3",
            ]

    def test_a_missing_old_key_is_reported_and_nothing_is_lost(self, make_job):
        job = make_job("j", task="demo.echo", secret_kwargs={"token": "keep-me"})
        before = raw_row(job)[0]
        new = Fernet.generate_key().decode()
        with override_settings(SCHEDULER_APP={"ENCRYPTION_KEYS": [new]}):
            with pytest.raises(CommandError, match="1 could not be decrypted with any configured key"):
                call_command("rotatekeys")
        assert raw_row(job)[0] == before
        assert Job.objects.get(pk=job.pk).reveal_secret_kwargs() == {"token": "keep-me"}

    def test_no_key_at_all(self, monkeypatch):
        monkeypatch.delenv("SCHEDULER_APP_ENCRYPTION_KEYS")
        with override_settings(SCHEDULER_APP={"ENCRYPTION_KEYS": []}):
            with pytest.raises(CommandError, match="no encryption key is configured"):
                call_command("rotatekeys")


def test_a_chinese_speaking_scheduler_stores_the_setup_error_in_english(secret_job):
    """A run's errors are stored as written (English), whatever language the scheduler
    process runs in (DJANGO_LANGUAGE_CODE=zh-hans)."""
    from django.utils import translation

    other = Fernet.generate_key().decode()
    with override_settings(SCHEDULER_APP={"ENCRYPTION_KEYS": [other]}), translation.override("zh-hans"):
        run = services.run_jobs_now([secret_job]).done[0]
        claimed = DjangoRunStore._claimed(run, Job.objects.get(pk=secret_job.pk))
    assert claimed.setup_error.startswith("secret kwargs: the secret kwargs cannot be decrypted")
