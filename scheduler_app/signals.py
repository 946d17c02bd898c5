"""Django signals a project may listen to.

- ``job_changed(job, created, actor)``: a job was created or changed through services.
- ``job_deleted(job_id, actor)``: a job was deleted.
- ``run_queued(run)``: a run entered the queue.
- ``run_started(run)``, ``run_succeeded(run)``, ``run_failed(run)``,
  ``run_timed_out(run)``, ``run_lost(run)``, ``run_skipped(run)``: sent by the worker
  as runs progress (outcomes after they are committed; ``run.is_final`` tells whether
  a retry follows).
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
