from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from scheduler_app.documents import limits
from scheduler_app.engine import triggerspec
from scheduler_app.engine.results import MASK
from scheduler_app.registry import TaskArgumentsError, TaskNotRegistered, registry


class StoredJSONField(models.JSONField):
    """A JSONField whose stored text is decoded through the limits
    (:func:`~scheduler_app.documents.limits.loads_stored_json`): a row nested deeper than
    the stack allows (old data) loads instead of raising ``RecursionError`` on every page
    that reads it. Migrations see a plain ``models.JSONField``."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if isinstance(value, str) and self.decoder is None:
            try:
                return limits.loads_stored_json(value)
            except json.JSONDecodeError:
                return value
        return super().from_db_value(value, expression, connection)

    def deconstruct(self) -> Any:
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.JSONField", args, kwargs


class JobGroup(models.Model):
    tenant = models.ForeignKey(
        "scheduler_app.Tenant", on_delete=models.CASCADE, related_name="groups", verbose_name=_("tenant")
    )
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    rate_limit = models.CharField(
        _("rate limit"),
        max_length=32,
        blank=True,
        help_text=_(
            'At most N runs of the group\'s jobs started per period, together: "10/m", "1000/h" '
            "(units s, m, h, d); empty: no limit."
        ),
    )

    class Meta:
        ordering = ["tenant__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="jobgroup_unique_name")]
        # Grants on a group apply to the jobs in it.
        permissions = [
            ("run_jobgroup", "Can run the group's jobs now"),
            ("pause_jobgroup", "Can pause and resume the group's jobs"),
        ]
        verbose_name = _("job group")
        verbose_name_plural = _("job groups")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from scheduler_app.documents import throttle as throttle_document

        throttle_document.clean_rate(self)


class Executor(models.TextChoices):
    ASYNCIO = "asyncio", _("asyncio (coroutines, I/O-bound)")
    THREAD = "thread", _("thread pool")
    PROCESS = "process", _("process pool (CPU-bound, reused worker processes)")
    ISOLATED = "isolated", _("isolated (a fresh process per run, clean environment)")


def executor_choices() -> list[tuple[str, str]]:
    """The built-in executors and those of plugins (scheduler_app.plugins)."""
    from scheduler_app import plugins

    return plugins.executor_choices()


class OverlapPolicy(models.TextChoices):
    SKIP = "skip", _("skip the new run")
    QUEUE = "queue", _("queue until a slot is free")
    REPLACE = "replace", _("stop the oldest run and start the new one")


class MisfirePolicy(models.TextChoices):
    SKIP = "skip", _("skip missed times")
    COALESCE = "coalesce", _("run once for all missed times")
    RUN_ALL = "run_all", _("run every missed time")


class ThrottlePolicy(models.TextChoices):
    WAIT = "wait", _("wait for the next free slot")
    SKIP = "skip", _("skip the run")


class TriggerRule(models.TextChoices):
    """When a job with upstream jobs runs (Airflow's names); see README "Trigger rules"."""

    ALL_SUCCESS = "all_success", _("all upstream jobs met their conditions (default: succeeded)")
    ALL_DONE = "all_done", _("all upstream jobs ended, succeeded or failed")
    NONE_FAILED = "none_failed", _("all upstream jobs ended and none failed")
    ONE_SUCCESS = "one_success", _("as soon as one upstream job succeeded")
    ONE_FAILED = "one_failed", _("as soon as one upstream job failed")


class LoadPolicy(models.TextChoices):
    RUN = "run", _("run as scheduled")
    DEFER = "defer", _("defer while the cluster is overloaded")
    SHED = "shed", _("skip fires while the cluster is overloaded")


class Routing(models.TextChoices):
    ANY = "any", _("any node")
    TAGS = "tags", _("nodes with all the tags")
    BROADCAST = "broadcast", _("every node")


class JobQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Any) -> JobQuerySet:
        return self.filter(tenant=tenant)

    def schedulable(self) -> JobQuerySet:
        """Jobs whose trigger should be live in the scheduler."""
        return self.filter(enabled=True, paused=False)

    def managed_by_code(self) -> JobQuerySet:
        return self.exclude(managed_by="")


def _default_trigger() -> dict[str, Any]:
    return {"type": "manual"}


class Job(models.Model):
    tenant = models.ForeignKey(
        "scheduler_app.Tenant", on_delete=models.PROTECT, related_name="jobs", verbose_name=_("tenant")
    )
    group = models.ForeignKey(
        JobGroup,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="jobs",
        verbose_name=_("group"),
    )
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    task = models.CharField(
        _("task"), max_length=200, help_text=_("A task registered in code with @scheduler_app.task.")
    )
    args = StoredJSONField(_("args"), default=list, blank=True)
    kwargs = StoredJSONField(_("kwargs"), default=dict, blank=True)
    # Secret kwargs are stored only as ciphertext (Fernet); their names and keyed
    # fingerprints are kept in clear so forms, versions and audits work without them.
    secrets_token = models.TextField(_("encrypted secret kwargs"), blank=True, editable=False)
    secret_names = models.JSONField(_("secret names"), default=list, blank=True, editable=False)
    secret_fingerprints = models.JSONField(_("secret fingerprints"), default=dict, blank=True, editable=False)
    trigger = StoredJSONField(_("trigger"), default=_default_trigger)
    calendars = models.ManyToManyField(
        "scheduler_app.Calendar",
        blank=True,
        related_name="jobs",
        verbose_name=_("exclusion calendars"),
        help_text=_("The trigger does not fire on the dates of these calendars."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    paused = models.BooleanField(_("paused"), default=False)
    alerts_muted_until = models.DateTimeField(
        _("alerts muted until"),
        null=True,
        blank=True,
        help_text=_("No alert rule sends anything about this job until this time."),
    )
    priority = models.IntegerField(_("priority"), default=0, help_text=_("Higher runs first."))
    executor = models.CharField(
        _("executor"), max_length=16, choices=executor_choices, default=Executor.THREAD
    )
    max_instances = models.PositiveIntegerField(
        _("max instances"), default=1, validators=[MinValueValidator(1)]
    )
    overlap_policy = models.CharField(
        _("overlap policy"), max_length=16, choices=OverlapPolicy.choices, default=OverlapPolicy.SKIP
    )
    misfire_policy = models.CharField(
        _("misfire policy"),
        max_length=16,
        choices=MisfirePolicy.choices,
        default=MisfirePolicy.COALESCE,
    )
    misfire_grace_seconds = models.PositiveIntegerField(_("misfire grace (s)"), default=60)
    retry_max_attempts = models.PositiveIntegerField(
        _("max attempts"), default=1, validators=[MinValueValidator(1)]
    )
    retry_backoff_seconds = models.FloatField(
        _("backoff (s)"), default=10.0, validators=[MinValueValidator(0)]
    )
    retry_backoff_factor = models.FloatField(
        _("backoff factor"), default=2.0, validators=[MinValueValidator(1.0)]
    )
    retry_max_backoff_seconds = models.FloatField(
        _("max backoff (s)"), default=3600.0, validators=[MinValueValidator(0)]
    )
    timeout_seconds = models.FloatField(
        _("timeout (s)"), null=True, blank=True, validators=[MinValueValidator(0.001)]
    )
    cpu_limit_seconds = models.FloatField(
        _("CPU limit (s)"), null=True, blank=True, validators=[MinValueValidator(0.001)]
    )
    memory_limit_mb = models.PositiveIntegerField(
        _("memory limit (MB)"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    routing = models.CharField(_("routing"), max_length=16, choices=Routing.choices, default=Routing.ANY)
    routing_tags = models.JSONField(_("routing tags"), default=list, blank=True)
    rate_limit = models.CharField(
        _("rate limit"),
        max_length=32,
        blank=True,
        help_text=_(
            'At most N runs started per period: "10/m", "1000/h" (units s, m, h, d); empty: no limit.'
        ),
    )
    concurrency_key = models.CharField(
        _("concurrency key"),
        max_length=100,
        blank=True,
        help_text=_(
            "Jobs of the tenant with the same key share the concurrency limit, across nodes "
            '(e.g. "erp"); empty: none.'
        ),
    )
    concurrency_limit = models.PositiveIntegerField(
        _("concurrency limit"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_("At most this many runs holding the key at once (empty: 1)."),
    )
    throttle_policy = models.CharField(
        _("over a limit"),
        max_length=16,
        choices=ThrottlePolicy.choices,
        default=ThrottlePolicy.WAIT,
        help_text=_("What happens to a run that is due while a rate or concurrency limit is reached."),
    )
    load_policy = models.CharField(
        _("under overload"),
        max_length=16,
        choices=LoadPolicy.choices,
        default=LoadPolicy.RUN,
        help_text=_(
            "What this job's scheduled runs do while the cluster is overloaded (every live node "
            "above MAX_LOAD, or more due runs queued than LOAD_QUEUE_FACTOR × the nodes' slots): "
            "run anyway, wait (at most the maximum delay), or be skipped with reason load."
        ),
    )
    load_max_delay_seconds = models.PositiveIntegerField(
        _("maximum deferral (s)"),
        default=300,
        validators=[MinValueValidator(1), MaxValueValidator(7 * 24 * 3600)],
        help_text=_("A deferred run starts after at most this long past its time, overloaded or not."),
    )
    trigger_rule = models.CharField(
        _("trigger rule"),
        max_length=16,
        choices=TriggerRule.choices,
        default=TriggerRule.ALL_SUCCESS,
        help_text=_(
            "When the job runs after its upstream jobs. Only all_success uses each dependency's "
            "condition; the other rules need the condition success on every dependency."
        ),
    )
    upstream_param = models.CharField(
        _("upstream results argument"),
        max_length=100,
        blank=True,
        help_text=_(
            "The name of a keyword argument of the task that receives the results of the upstream "
            "runs that triggered the run, as an object job name → result (e.g. upstream); "
            "empty: not passed."
        ),
    )
    pause_after_failures = models.PositiveIntegerField(
        _("pause after failures"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_(
            "Pause the job after this many consecutive final failures (retries exhausted); "
            "empty: never. It then resumes only by hand."
        ),
    )
    paused_reason = models.CharField(
        _("paused because"),
        max_length=500,
        blank=True,
        editable=False,
        help_text=_("Why the scheduler paused the job (empty: paused by hand, or not paused)."),
    )
    # The module whose code declares the job (``@task(schedule=...)`` or
    # SCHEDULER_APP["JOBS"]); empty for jobs made by hand, files or the API.
    managed_by = models.CharField(_("managed by code"), max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    trigger_changed_at = models.DateTimeField(
        _("trigger changed"),
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "When the schedule itself last changed; missed fire times before it are not treated as misfires."
        ),
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["tenant__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="job_unique_name_per_tenant")]
        indexes = [models.Index(fields=["enabled", "paused"], name="job_schedulable_idx")]
        permissions = [("run_job", "Can run the job now"), ("pause_job", "Can pause and resume the job")]
        verbose_name = _("job")
        verbose_name_plural = _("jobs")

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        from django.utils import timezone

        pending = getattr(self, "_pending_secrets", None)
        if isinstance(pending, dict):
            from scheduler_app import crypto

            self.secrets_token = crypto.encrypt(pending) if pending else ""
            self._pending_secrets = None
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = list(
                    {*kwargs["update_fields"], "secrets_token", "secret_names", "secret_fingerprints"}
                )
        # The trigger first: on an instance read with it deferred, reading it loads it
        # (refresh_from_db below remembers it as loaded), so an untouched trigger is not
        # a change; one assigned without being read counts as changed.
        trigger = self.trigger
        if getattr(self, "_loaded_trigger", None) != trigger or self.trigger_changed_at is None:
            self.trigger_changed_at = timezone.now()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = list({*kwargs["update_fields"], "trigger_changed_at"})
        super().save(*args, **kwargs)
        self._loaded_trigger = self.trigger

    def refresh_from_db(self, using: Any = None, fields: Any = None, **kwargs: Any) -> None:
        """Also what reading a deferred field does: a trigger read from the database is
        the loaded one (see :meth:`save`)."""
        super().refresh_from_db(using=using, fields=fields, **kwargs)
        if fields is None or "trigger" in fields:
            self._loaded_trigger = self.__dict__.get("trigger")

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> Job:
        instance = super().from_db(db, field_names, values)
        instance._loaded_trigger = instance.__dict__.get("trigger")
        return instance

    # -- secrets ---------------------------------------------------------------------

    @property
    def secret_kwargs(self) -> dict[str, Any]:
        """The secret kwargs *masked*: names with a placeholder. Use
        :meth:`reveal_secret_kwargs` (worker only) for the values."""
        pending = getattr(self, "_pending_secrets", None)
        if isinstance(pending, dict):
            return {name: MASK for name in pending}
        return {name: MASK for name in self.secret_names or []}

    @secret_kwargs.setter
    def secret_kwargs(self, values: Any) -> None:
        from scheduler_app import crypto

        self._pending_secrets = values
        if isinstance(values, dict):
            self.secret_names = sorted(values)
            self.secret_fingerprints = {k: crypto.fingerprint(k, v) for k, v in sorted(values.items())}

    def reveal_secret_kwargs(self) -> dict[str, Any]:
        from scheduler_app import crypto

        pending = getattr(self, "_pending_secrets", None)
        if isinstance(pending, dict):
            return dict(pending)
        return crypto.decrypt(self.secrets_token)

    def set_secrets_token(self, token: str) -> None:
        """Adopt ciphertext made elsewhere (a backup, an export with secrets)."""
        from scheduler_app import crypto

        self.secret_kwargs = crypto.decrypt(token)
        self._pending_secrets = None
        self.secrets_token = token

    # -- domain helpers ---------------------------------------------------------------

    @property
    def hash_key(self) -> str:
        """Stable identity for hashed (``H``) cron values: spreads load per job."""
        slug = self.tenant.slug if self.tenant_id else ""
        return f"{slug}/{self.name}"

    @property
    def trigger_spec(self) -> triggerspec.TriggerSpec:
        from scheduler_app import plugins
        from scheduler_app.conf import app_settings

        plugins.registry.load()  # plugin trigger types
        return triggerspec.parse_trigger(
            self.trigger,
            max_children=app_settings.TRIGGER_MAX_CHILDREN,
            max_depth=app_settings.TRIGGER_MAX_DEPTH,
        )

    @property
    def is_schedulable(self) -> bool:
        return self.enabled and not self.paused

    def describe_trigger(self) -> str:
        try:
            from scheduler_app import i18n

            return i18n.describe_trigger(self.trigger_spec, hash_key=self.hash_key)
        except ValueError as exc:
            return f"invalid trigger: {exc}"

    def excluded_dates(self) -> list:
        if self.pk is None:
            return []
        from scheduler_app.models.calendars import CalendarDate

        return list(CalendarDate.objects.filter(calendar__jobs=self).values_list("date", flat=True))

    def build_trigger(self, anchor: Any = None) -> Any:
        return triggerspec.build_trigger(
            self.trigger_spec,
            hash_key=self.hash_key,
            anchor=anchor or self.created_at,
            excluded_dates=self.excluded_dates(),
        )

    def upcoming_fire_times(self, after: Any, count: int = 10) -> list:
        return triggerspec.fire_times(self.build_trigger(), after, count)

    # -- validation -------------------------------------------------------------------

    def clean_fields(self, exclude: Any = None) -> None:
        # Depth, size and NUL limits before Django's own field checks (JSONField's
        # validation encodes the value, recursively) and before clean() walks them.
        # Fields left out (a form's own or already rejected ones) are the caller's.
        errors = {k: v for k, v in limits.check_job(self).items() if k not in (exclude or ())}
        try:
            super().clean_fields(exclude={*(exclude or ()), *errors})
        except ValidationError as exc:
            if not errors:
                raise
            for field, messages in exc.message_dict.items():
                errors.setdefault(field, "; ".join(messages))
        if errors:
            raise ValidationError(errors)

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}

        def add(field: str, message: str) -> None:
            errors.setdefault(field, []).append(message)

        if self.group_id and self.tenant_id and self.group.tenant_id != self.tenant_id:
            add("group", "The group belongs to another tenant.")
        if limits.check_job(self):
            return  # reported by clean_fields; nothing below walks such values
        # Trigger: normalise to the canonical document so admin, API and files agree.
        try:
            self.trigger = self.trigger_spec.to_dict()
        except triggerspec.TriggerSpecError as exc:
            add("trigger", str(exc))
        self._clean_call(add)
        if self.retry_max_backoff_seconds is not None and self.retry_backoff_seconds is not None:
            if self.retry_max_backoff_seconds < self.retry_backoff_seconds:
                add("retry_max_backoff_seconds", "Must be at least the backoff.")
        if (self.cpu_limit_seconds or self.memory_limit_mb) and self.executor:
            from scheduler_app import plugins

            if not plugins.enforces_limits(self.executor):
                field = "cpu_limit_seconds" if self.cpu_limit_seconds else "memory_limit_mb"
                add(
                    field,
                    f"The {self.executor} executor cannot enforce CPU or memory limits; "
                    "use the process or isolated executor, or clear the limits.",
                )
        tags = self.routing_tags
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            add("routing_tags", "Must be a list of non-empty strings.")
        elif self.routing == Routing.TAGS and not tags:
            add("routing_tags", "Routing by tags needs at least one tag.")
        from scheduler_app.documents import throttle as throttle_document

        for field, message in throttle_document.job_errors(self).items():
            add(field, message)
        self._clean_upstream_param(add)
        if errors:
            raise ValidationError(errors)

    def _clean_upstream_param(self, add: Any) -> None:
        from django.utils.translation import gettext

        name = self.upstream_param
        if not name:
            self.upstream_param = ""
            return
        if not isinstance(name, str) or not name.isidentifier():
            add("upstream_param", gettext("%(name)r is not a valid argument name") % {"name": name})
            return
        given = {*(self.kwargs if isinstance(self.kwargs, dict) else {}), *(self.secret_names or [])}
        if name in given:
            add(
                "upstream_param",
                gettext(
                    "%(name)r is also given in kwargs; the upstream results need an argument of their own"
                )
                % {"name": name},
            )
            return
        if self.task not in registry:
            return  # reported on task
        try:
            params = registry.get(self.task).signature.parameters
        except (TypeError, ValueError):
            return
        param = params.get(name)
        takes_varkw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        if (param is None and not takes_varkw) or (
            param is not None
            and param.kind in (param.POSITIONAL_ONLY, param.VAR_POSITIONAL, param.VAR_KEYWORD)
        ):
            add(
                "upstream_param",
                gettext("task %(task)s has no keyword argument %(name)r") % {"task": self.task, "name": name},
            )

    def _clean_call(self, add: Any) -> None:
        if not self.task:
            return  # blank=False reports the missing value
        try:
            task = registry.get(self.task)
        except TaskNotRegistered as exc:
            add("task", f"{exc}; registered tasks: {', '.join(registry.names()) or 'none'}")
            return
        pending = getattr(self, "_pending_secrets", None)
        if pending is not None and not isinstance(pending, dict):
            add("secret_kwargs", "Must be an object.")
            return
        if isinstance(self.kwargs, dict):
            both = sorted(set(self.kwargs) & set(self.secret_kwargs))
            if both:
                add("secret_kwargs", f"{both[0]!r} is given in both kwargs and secret kwargs.")
                return
        merged = {**self.kwargs, **self.secret_kwargs} if isinstance(self.kwargs, dict) else self.kwargs
        try:
            task.check_call(self.args, merged)
        except TaskArgumentsError as exc:
            field = exc.field
            if field == "kwargs" and any(repr(key) in str(exc) for key in self.secret_kwargs):
                field = "secret_kwargs"
            add(field, str(exc))


class DependencyCondition(models.TextChoices):
    SUCCESS = "success", _("upstream succeeded")
    FAILURE = "failure", _("upstream failed")
    COMPLETION = "completion", _("upstream finished either way")


class JobDependency(models.Model):
    """An edge of the job DAG: ``downstream`` runs after ``upstream`` meets ``condition``."""

    Condition = DependencyCondition

    tenant = models.ForeignKey(
        "scheduler_app.Tenant",
        on_delete=models.CASCADE,
        related_name="dependencies",
        editable=False,
        verbose_name=_("tenant"),
    )
    upstream = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="downstream_edges", verbose_name=_("upstream")
    )
    downstream = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="upstream_edges", verbose_name=_("downstream")
    )
    condition = models.CharField(
        _("condition"),
        max_length=16,
        choices=DependencyCondition.choices,
        default=DependencyCondition.SUCCESS,
    )

    class Meta:
        ordering = ["upstream__name", "downstream__name"]
        constraints = [
            models.UniqueConstraint(fields=["upstream", "downstream"], name="dependency_unique_edge"),
            models.CheckConstraint(
                condition=~models.Q(upstream=models.F("downstream")), name="dependency_no_self_edge"
            ),
        ]
        verbose_name = _("job dependency")
        verbose_name_plural = _("job dependencies")

    def __str__(self) -> str:
        return f"{self.upstream} → {self.downstream} ({self.condition})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.upstream_id and not self.tenant_id:
            self.tenant_id = self.upstream.tenant_id
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self._clean_condition()
        if not (self.upstream_id and self.downstream_id):
            return
        if self.upstream_id == self.downstream_id:
            raise ValidationError({"downstream": "A job cannot depend on itself."})
        if self.upstream.tenant_id != self.downstream.tenant_id:
            raise ValidationError(
                {
                    "downstream": "Dependencies cannot cross tenants: "
                    f"{self.upstream} is in {self.upstream.tenant}, "
                    f"{self.downstream} is in {self.downstream.tenant}."
                }
            )
        cycle = find_path(self.downstream_id, self.upstream_id, exclude_edge=self.pk)
        if cycle:
            names = dict(Job.objects.filter(pk__in=cycle).values_list("pk", "name"))
            chain = " → ".join(names[pk] for pk in [self.upstream_id, *cycle])
            raise ValidationError({"downstream": f"This dependency would create a cycle: {chain}."})
        self.tenant_id = self.upstream.tenant_id

    def _clean_condition(self) -> None:
        """Only all_success reads conditions (the downstream may be a job being added)."""
        downstream = (
            self.downstream if self.downstream_id or "downstream" in self._state.fields_cache else None
        )
        if downstream is None:
            return
        if (
            self.condition != DependencyCondition.SUCCESS
            and downstream.trigger_rule != TriggerRule.ALL_SUCCESS
        ):
            from django.utils.translation import gettext

            raise ValidationError(
                {
                    "condition": gettext(
                        "The condition %(condition)s is only used with the trigger rule all_success; "
                        "%(job)s has the trigger rule %(rule)s, which decides on the upstream "
                        "outcomes itself: use the condition success."
                    )
                    % {
                        "condition": self.condition,
                        "job": downstream.name,
                        "rule": downstream.trigger_rule,
                    }
                }
            )


def find_path(start: int, goal: int, exclude_edge: int | None = None) -> list[int]:
    """Job ids from ``start`` to ``goal`` along downstream edges, or [] if unreachable."""
    edges: dict[int, list[int]] = {}
    qs = JobDependency.objects.all()
    if exclude_edge is not None:
        qs = qs.exclude(pk=exclude_edge)
    tenant_id = Job.objects.filter(pk=start).values_list("tenant_id", flat=True).first()
    for up, down in qs.filter(tenant_id=tenant_id).values_list("upstream_id", "downstream_id"):
        edges.setdefault(up, []).append(down)
    parents: dict[int, int | None] = {start: None}
    frontier = [start]
    while frontier:
        nxt: list[int] = []
        for node in frontier:
            for child in edges.get(node, ()):
                if child in parents:
                    continue
                parents[child] = node
                if child == goal:
                    path = [child]
                    while parents[path[-1]] is not None:
                        path.append(parents[path[-1]])  # type: ignore[arg-type]
                    return list(reversed(path))
                nxt.append(child)
        frontier = nxt
    return [start] if start == goal else []
