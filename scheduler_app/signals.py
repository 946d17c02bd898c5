"""Django signals a project may listen to.

- ``job_changed(job, created, actor)``: a job was created or changed through services.
- ``job_deleted(job_id, actor)``: a job was deleted.
- ``run_queued(run)``: a run entered the queue.
- ``run_started(run)``, ``run_succeeded(run)``, ``run_failed(run)``,
  ``run_timed_out(run)``, ``run_skipped(run)``, ``run_lost(run)``,
  ``run_interrupted(run)``: sent by the node recording the outcome, after its
  transaction committed.
- ``run_cancelled(run)``: an operator cancelled a queued run (after it committed).
- ``run_retrying(run)``: a failed, timed-out or lost run will be retried (sent besides
  the failure's own signal; ``run.is_final`` is False).
- ``alert_sent(alert, response)``: an alert (an ``AlertOutbox`` row) reached its channel.
- ``alert_failed(alert, error, final)``: a delivery attempt failed; ``final`` is True
  when no further attempt follows (the alert is ``dead``).

Every run signal passes ``sender=JobRun``; the alert signals ``sender=AlertOutbox``.
Receivers run in the scheduler's threads: keep them quick, and do not raise.
"""

from django.dispatch import Signal

job_changed = Signal()
job_deleted = Signal()
run_queued = Signal()
run_started = Signal()
run_succeeded = Signal()
run_failed = Signal()
run_timed_out = Signal()
run_lost = Signal()
run_skipped = Signal()
run_cancelled = Signal()
run_interrupted = Signal()
run_retrying = Signal()
alert_sent = Signal()
alert_failed = Signal()
