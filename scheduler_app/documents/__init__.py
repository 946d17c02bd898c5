"""The documents the app reads and writes: what a valid job (and its references) is,
with field-path errors, and model ⇄ document. Jobs files, backups, versions and API
serializers all use these, so there is one definition of each.

* :mod:`~scheduler_app.documents.header` — rules shared by the JSON file formats.
* :mod:`~scheduler_app.documents.job` — the job document.

Nothing here saves: callers decide transactions and go through
:mod:`scheduler_app.services` to write.
"""

from scheduler_app.documents.header import check_header

__all__ = ["check_header"]
