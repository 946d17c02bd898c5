"""Whole-configuration files: jobs files (:mod:`~scheduler_app.interchange.jobsfile`,
``exportjobs`` / ``importjobs``) and backups (:mod:`~scheduler_app.interchange.backup`,
``backup`` / ``restore``). Both read and write jobs through the job document
(:mod:`scheduler_app.documents.job`) and write through :mod:`scheduler_app.services`."""
