"""Admin forms. The job form edits the trigger document through plain fields (type,
expression, time zone, ...) and reports every error on the field it concerns."""

from __future__ import annotations

import json
import zoneinfo
from functools import cache, cached_property
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from scheduler_app import i18n
from scheduler_app.conf import app_settings
from scheduler_app.documents import limits
from scheduler_app.engine import triggerspec
from scheduler_app.models import Job, JobDependency, JobGroup
from scheduler_app.models.jobs import MASK
from scheduler_app.registry import registry

#: The cron dialects, as both the job form and a combined trigger's children offer them.
DIALECT_CHOICES = [("crontab", "crontab"), ("quartz", "Quartz")]


class LimitedJSONField(forms.JSONField):
    """A JSON form field within the input limits (:mod:`scheduler_app.documents.limits`):
    text nested deeper than ``MAX_JSON_DEPTH`` is refused before it is parsed (no
    ``RecursionError``), NUL characters are refused, and a stored value too deep to show
    (old data) is shown as a note instead of failing the page."""

    def _scan(self, value: Any) -> None:
        if isinstance(value, str):
            try:
                limits.scan_json_depth(value, field=str(self.label or "value"))
            except limits.LimitError as exc:
                raise ValidationError(exc.message, code="depth") from None

    def to_python(self, value: Any) -> Any:
        self._scan(value)
        result = super().to_python(value)
        try:
            limits.check_value(result, str(self.label or "value"))
        except limits.LimitError as exc:
            raise ValidationError(exc.message, code="limits") from None
        return result

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            self._scan(data)
        except ValidationError:
            return forms.fields.InvalidJSONInput(data)
        return super().bound_data(data, initial)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        try:
            limits.check_value(value, "value")
        except limits.LimitError as exc:
            return _("(not shown: %(reason)s)") % {"reason": exc.message}
        return super().prepare_value(value)


def find_account(text: str, *, among: Any = None) -> Any:
    """The active user whose user name, or else e-mail, is exactly ``text`` (``among``: a
    queryset to look in; default every account but guardian's anonymous one), or None.
    Never lists accounts: a tenant admin learns nothing beyond "no such user"."""
    from django.contrib.auth import get_user_model
    from guardian.conf import settings as guardian_settings

    User = get_user_model()
    text = (text or "").strip()
    if not text or "\x00" in text:
        return None
    users = (among if among is not None else User._default_manager.all()).filter(is_active=True)
    users = users.exclude(**{User.USERNAME_FIELD: guardian_settings.ANONYMOUS_USER_NAME})
    user = users.filter(**{User.USERNAME_FIELD: text}).first()
    if user is None and "@" in text:
        matches = list(users.filter(email__iexact=text)[:2])
        user = matches[0] if len(matches) == 1 else None
    return user


class AccountByNameField(forms.CharField):
    """A user given by exact user name or e-mail (for tenant admins, instead of a list
    of every account); cleans to the user or "no such user"."""

    default_error_messages = {"no_such_user": _("No such user.")}

    def __init__(self, *args: Any, among: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", _("The exact user name or e-mail address."))
        kwargs.setdefault("max_length", 254)
        super().__init__(*args, **kwargs)
        self.among = among

    def prepare_value(self, value: Any) -> Any:
        from django.contrib.auth import get_user_model

        User = get_user_model()
        if isinstance(value, User):
            return value.get_username()
        if isinstance(value, int):  # a bound inline row's current member
            user = User._default_manager.filter(pk=value).first()
            return user.get_username() if user else ""
        return value

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        if not text:
            return None
        user = find_account(text, among=self.among)
        if user is None:
            raise ValidationError(self.error_messages["no_such_user"], code="no_such_user")
        return user


class _BlankJSONField(LimitedJSONField):
    """Shows nothing (not ``null``) when there is no value."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else super().prepare_value(value)


TRIGGER_TYPE_CHOICES = [
    ("cron", _("Cron expression")),
    ("interval", _("Every N seconds")),
    ("date", _("Once, at a date and time")),
    ("manual", _("Manual (run now / dependencies only)")),
    ("all", _("All of several triggers (AND)")),
    ("any", _("Any of several triggers (OR)")),
]

#: the form fields each trigger type uses; the others are hidden (by job_form.js) and
#: ignored on save, so a browser without JavaScript saves only the chosen type.
FIELDS_BY_TYPE = {
    "cron": {"cron_expression", "cron_dialect", "trigger_timezone"},
    "date": {"run_at", "trigger_timezone"},
    "interval": {"interval_seconds", "interval_start", "interval_end", "interval_jitter", "trigger_timezone"},
    "manual": set(),
    "all": {"combination"},
    "any": {"combination"},
}
#: a plugin's trigger type (scheduler_app.plugins) is edited as one JSON object
PLUGIN_FIELDS = {"plugin_config"}
TRIGGER_FORM_FIELDS = set().union(*FIELDS_BY_TYPE.values(), PLUGIN_FIELDS)


def plugin_trigger_types() -> dict[str, Any]:
    """The trigger types of the plugins loaded now, by name."""
    from scheduler_app import plugins

    return dict(plugins.registry.load().trigger_types)


def fields_of_type(kind: Any) -> set[str] | None:
    """The form fields a trigger type uses (None: not a type this form knows)."""
    if kind in FIELDS_BY_TYPE:
        return FIELDS_BY_TYPE[kind]
    return PLUGIN_FIELDS if isinstance(kind, str) and kind in plugin_trigger_types() else None


def plugin_type_choices() -> list[tuple[str, Any]]:
    """The loaded plugins' trigger types as choices: "business_days (plugin example)"."""
    return [
        (name, _("%(name)s (plugin %(plugin)s)") % {"name": name, "plugin": kind.plugin or "?"})
        for name, kind in sorted(plugin_trigger_types().items())
    ]


def plugin_config_help() -> str:
    """The help of a plugin trigger's settings field: each loaded type's schema keys, as
    "every (integer, required)"."""
    lines = []
    for name, kind in sorted(plugin_trigger_types().items()):
        schema = kind.schema or {}
        required = set(schema.get("required") or ())
        keys = [
            f"{key} ({rules.get('type', 'any') if isinstance(rules, dict) else 'any'}"
            + (", " + str(_("required")) if key in required else "")
            + ")"
            for key, rules in (schema.get("properties") or {}).items()
        ]
        lines.append(f"{name}: {', '.join(keys) or '—'}")
    help_text = _("For a plugin's trigger type: its settings as a JSON object (without type).")
    return format_html("{} {}", help_text, format_html_join("; ", "{}", ((line,) for line in lines)))


def missing_trigger_types(doc: Any, *, _depth: int = 0) -> list[str]:
    """The trigger types of ``doc`` (and of its children, for all/any) that are neither
    built in nor a loaded plugin's: a plugin that was uninstalled or failed to load."""
    if not isinstance(doc, dict) or _depth > 50:
        return []
    kind = doc.get("type")
    if kind in ("all", "any"):
        found: list[str] = []
        for child in doc.get("triggers") or []:
            found += [k for k in missing_trigger_types(child, _depth=_depth + 1) if k not in found]
        return found
    if not isinstance(kind, str) or kind in FIELDS_BY_TYPE or kind in plugin_trigger_types():
        return []
    return [kind]


def missing_plugin_message(kinds: list[str]) -> str:
    """Why a stored trigger whose plugin is gone cannot be saved as it is, and what to do."""
    from scheduler_app import plugins

    message = _(
        "The trigger type %(types)s is not available: the plugin that provides it is not "
        "installed (or failed to load; see the system checks). The stored trigger is kept: "
        "install the plugin to save it again, or choose another trigger to replace it."
    ) % {"types": ", ".join(repr(k) for k in kinds)}
    failed = sorted({p.plugin for p in plugins.registry.load().problems})
    if failed:
        message += " " + _("Plugins that failed to load: %(plugins)s.") % {"plugins": ", ".join(failed)}
    return message


@cache
def zone_choices() -> list[tuple[str, str]]:
    """Every IANA zone name the system knows (``zoneinfo.available_timezones()``)."""
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


class ZoneSelect(forms.Select):
    """A select of zone names with a search box in front (``job_form.js``); without
    JavaScript it is a plain select, in which typing a name also jumps to it."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(
            attrs={
                "data-zone-select": "1",
                "data-search-label": _("Search time zones"),
                "data-search-placeholder": _("Search…"),
                "data-no-match": _("No time zone matches."),
                **(attrs or {}),
            }
        )


class TenantOptionSelect(forms.Select):
    """Options carry their tenant (``data-tenant``) so that job_form.js shows only the
    chosen tenant's groups."""

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        instance = getattr(value, "instance", None)
        if instance is not None and getattr(instance, "tenant_id", None) is not None:
            option["attrs"]["data-tenant"] = str(instance.tenant_id)
        return option


class TagsField(forms.CharField):
    """Routing tags as comma-separated text (``gpu, eu-west``); stored as a list."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        if isinstance(value, str) and value.startswith("["):
            try:
                return ", ".join(str(v) for v in json.loads(value))
            except ValueError:
                return value
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        parts: list[Any] = text.split(",")
        if text.startswith("["):  # the JSON list the field used to take
            try:
                loaded = json.loads(text)
            except ValueError:
                loaded = None
            if isinstance(loaded, list):
                parts = [str(t) for t in loaded]
        tags: list[str] = []
        for tag in (t.strip() for t in parts):
            if tag and tag not in tags:
                tags.append(tag)
        return tags


#: trigger document key -> form field, for putting errors where they belong.
TRIGGER_FIELDS = {
    "type": "trigger_type",
    "expression": "cron_expression",
    "dialect": "cron_dialect",
    "timezone": "trigger_timezone",
    "run_at": "run_at",
    "seconds": "interval_seconds",
    "start": "interval_start",
    "end": "interval_end",
    "jitter": "interval_jitter",
}


def trigger_initial(doc: dict[str, Any]) -> dict[str, Any]:
    """The form values (initial data) showing the single trigger ``doc`` (cron, date,
    interval): the same field names in the job form and in a child trigger form."""
    kind = doc.get("type", "manual")
    values: dict[str, Any] = {"trigger_type": kind}
    if kind == "cron":
        values.update(
            cron_expression=doc.get("expression", ""),
            cron_dialect=doc.get("dialect", "crontab"),
            trigger_timezone=doc.get("timezone", "UTC"),
        )
    elif kind == "date":
        values.update(run_at=doc.get("run_at"), trigger_timezone=doc.get("timezone") or "")
    elif kind == "interval":
        values.update(
            interval_seconds=doc.get("seconds"),
            interval_start=doc.get("start") or "",
            interval_end=doc.get("end") or "",
            interval_jitter=doc.get("jitter"),
            trigger_timezone=doc.get("timezone") or "",
        )
    elif kind not in ("manual", "all", "any"):  # a plugin's type: its settings as JSON
        values["plugin_config"] = {k: v for k, v in doc.items() if k != "type"}
    return values


def single_trigger_document(data: dict[str, Any]) -> dict[str, Any]:
    """The trigger document of cleaned form values for a cron, date or interval trigger
    (anything else: manual). Parsing it (``triggerspec.parse_trigger``) checks it."""
    kind = data.get("trigger_type")
    tz = (data.get("trigger_timezone") or "").strip()
    if kind == "cron":
        return {
            "type": "cron",
            "expression": data.get("cron_expression") or "",
            "dialect": data.get("cron_dialect") or "crontab",
            "timezone": tz or settings.TIME_ZONE or "UTC",
        }
    if kind == "date":
        doc: dict[str, Any] = {"type": "date", "run_at": (data.get("run_at") or "").strip()}
    elif kind == "interval":
        doc = {
            "type": "interval",
            "seconds": data.get("interval_seconds"),
            "start": (data.get("interval_start") or "").strip() or None,
            "end": (data.get("interval_end") or "").strip() or None,
            "jitter": data.get("interval_jitter") or None,
        }
    else:
        return {"type": "manual"}
    if tz:
        doc["timezone"] = tz
    return doc


# -- combined triggers: a formset of child triggers -------------------------------------

#: A child's types: the single triggers with their own fields, the loaded plugins' types
#: (their settings as one JSON object, as at the top level; added per form), and "json"
#: for a child the fields cannot show (a combination nested inside the combination, a
#: type whose plugin is not loaded), edited as its trigger document. "manual" cannot be
#: combined.
CHILD_TYPE_CHOICES = [
    ("cron", _("Cron expression")),
    ("interval", _("Every N seconds")),
    ("date", _("Once, at a date and time")),
    ("json", _("Advanced: a trigger document (JSON), e.g. a nested combination")),
]
CHILD_FIELDS_BY_TYPE = {
    "cron": {"cron_expression", "cron_dialect", "trigger_timezone"},
    "date": {"run_at", "trigger_timezone"},
    "interval": {"interval_seconds", "interval_start", "interval_end", "interval_jitter", "trigger_timezone"},
    "json": {"document"},
}
CHILD_TRIGGER_FIELDS = set().union(*CHILD_FIELDS_BY_TYPE.values(), PLUGIN_FIELDS)


def child_fields_of_type(kind: Any) -> set[str] | None:
    """The child form fields a child's type uses (None: not a type the form knows)."""
    if kind in CHILD_FIELDS_BY_TYPE:
        return CHILD_FIELDS_BY_TYPE[kind]
    return PLUGIN_FIELDS if isinstance(kind, str) and kind in plugin_trigger_types() else None


#: Empty forms always rendered after the children, so that a browser without
#: JavaScript can add children too (two at a time); with it, "Add another" clones more.
CHILD_EXTRA = 2


class ChildTriggerForm(forms.Form):
    """One child of an all/any trigger, with the job form's widgets for a single trigger
    (the same field names, so cron_preview.js and job_form.js treat both alike)."""

    trigger_type = forms.ChoiceField(label=_("Type"), choices=CHILD_TYPE_CHOICES, initial="cron")
    cron_expression = forms.CharField(
        label=_("Cron expression"),
        required=False,
        widget=forms.TextInput(attrs={"class": "vTextField", "data-cron-preview": "1"}),
    )
    cron_dialect = forms.ChoiceField(
        label=_("Dialect"),
        choices=DIALECT_CHOICES,
        required=False,
        initial="crontab",
    )
    run_at = forms.CharField(
        label=_("Run at"),
        required=False,
        help_text=_("ISO 8601, e.g. 2026-12-01T09:00:00 (in the time zone) or with an offset."),
    )
    interval_seconds = forms.IntegerField(label=_("Every (seconds)"), required=False, min_value=1)
    interval_start = forms.CharField(label=_("Start"), required=False, help_text=_("ISO 8601; optional."))
    interval_end = forms.CharField(label=_("End"), required=False, help_text=_("ISO 8601; optional."))
    interval_jitter = forms.IntegerField(label=_("Jitter (seconds)"), required=False, min_value=0)
    trigger_timezone = forms.ChoiceField(
        label=_("Time zone"),
        required=False,
        choices=(),
        widget=ZoneSelect(),
        error_messages={
            "invalid_choice": _("Unknown time zone %(value)s: choose an IANA name from the list.")
        },
    )
    document = _BlankJSONField(
        label=_("Trigger (JSON)"),
        required=False,
        help_text=_(
            'A trigger document, e.g. {"type": "all", "triggers": [{"type": "cron", '
            '"expression": "0 9 * * *"}, {"type": "interval", "seconds": 3600}]}.'
        ),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )
    plugin_config = _BlankJSONField(
        label=_("Plugin trigger settings (JSON)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )

    def __init__(self, *args: Any, preview_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["trigger_type"].choices = [*CHILD_TYPE_CHOICES, *plugin_type_choices()]
        self.fields["plugin_config"].help_text = plugin_config_help()
        zone = self.fields["trigger_timezone"]
        zone.choices = [("", "—"), *zone_choices()]
        zone.initial = settings.TIME_ZONE or "UTC"
        current = self.initial.get("trigger_timezone")
        if current and current not in zoneinfo.available_timezones():
            # a stored zone stays (checked on save); assigned, not appended: appending to
            # a field's choices does not reach its widget, which showed none selected
            zone.choices = [*zone.choices, (current, current)]
        if preview_url:
            self.fields["cron_expression"].widget.attrs["data-cron-preview-url"] = preview_url

    def full_clean(self) -> None:
        super().full_clean()
        # As in the job form: the fields of the types not chosen are hidden and ignored.
        kind = self.data.get(self.add_prefix("trigger_type")) if self.is_bound else None
        used = child_fields_of_type(kind)
        if used is not None and self._errors:
            for name in CHILD_TRIGGER_FIELDS - used:
                self._errors.pop(name, None)

    @staticmethod
    def initial_for(doc: Any) -> dict[str, Any]:
        """Initial values showing the child trigger ``doc``: a loaded plugin's type with
        its settings field, a type whose plugin is not loaded as its whole document."""
        if isinstance(doc, dict) and doc.get("type") in ("cron", "date", "interval"):
            return trigger_initial(doc)
        if isinstance(doc, dict) and doc.get("type") in plugin_trigger_types():
            return trigger_initial(doc)
        return {"trigger_type": "json", "document": doc}

    @property
    def settings_field(self) -> str | None:
        """The field holding the child's document as JSON (None: the single trigger fields)."""
        kind = self.cleaned_data.get("trigger_type")
        if kind == "json":
            return "document"
        return "plugin_config" if child_fields_of_type(kind) is PLUGIN_FIELDS else None

    def trigger_document(self) -> Any:
        """The child's trigger document (after ``is_valid()``); a plugin type's settings
        that are not a JSON object raise :class:`PluginConfigError`."""
        data = self.cleaned_data
        kind = data.get("trigger_type")
        if kind == "json":
            return data.get("document")
        if child_fields_of_type(kind) is PLUGIN_FIELDS:
            config = data.get("plugin_config")
            config = {} if config is None else config
            if not isinstance(config, dict):
                raise PluginConfigError(
                    _('Enter a JSON object of the trigger\'s settings, e.g. {"every": 2}.')
                )
            return {**{k: v for k, v in config.items() if k != "type"}, "type": kind}
        return single_trigger_document(data)

    def label_of(self, name: str | None) -> str:
        field = self.fields.get(name or "")
        label = str(field.label) if field is not None else str(_("trigger"))
        return label[:1].lower() + label[1:]


class ChildTriggerFormSet(forms.BaseFormSet):
    """The children of an all/any trigger. :meth:`children` gives their documents, each
    checked on its own, or the errors, each naming its child and field."""

    default_error_messages = {
        "too_many_forms": _("a combination may have at most %(num)d triggers"),
    }
    #: the trigger types of the stored trigger whose plugin is not loaded (set by the job form)
    missing_types: list[str] = []  # noqa: RUF012 - replaced per formset, never mutated

    def kept_forms(self) -> list[tuple[int, ChildTriggerForm]]:
        """(number shown, form) of the children to save: the stored ones and the extra
        forms filled in, not those ticked for deletion."""
        kept = []
        for index, form in enumerate(self.forms):
            if index >= self.initial_form_count() and not form.has_changed():
                continue  # an extra form left empty
            if self.can_delete and self._should_delete_form(form):
                continue
            kept.append((index + 1, form))
        return kept

    def children(self, *, max_children: int, max_depth: int) -> tuple[list[Any], list[str]]:
        """(child documents, errors). Each child is parsed as it will be inside the
        combination (depth 1), so the errors of every child are reported at once."""
        errors = [str(e) for e in self.non_form_errors()] if self.is_bound else []
        if not self.is_bound or not self.management_form.is_valid():
            return [], errors or [str(_("The child triggers are missing from the form; reload the page."))]
        documents = []
        for number, form in self.kept_forms():
            form_errors = dict(form.errors)
            for name, messages in form_errors.items():
                for message in messages:
                    errors.append(child_error(number, form.label_of(name), message))
            if form_errors:
                continue
            field = form.settings_field
            try:
                doc = form.trigger_document()
            except PluginConfigError as exc:
                errors.append(child_error(number, form.label_of(field), str(exc)))
                form.add_error(field, str(exc))
                continue
            path = f"trigger.triggers[{number - 1}]"
            gone = [k for k in missing_trigger_types(doc) if k in self.missing_types]
            if gone:  # a stored child whose plugin is not loaded: say so, not "not a type"
                message = missing_plugin_message(gone)
                errors.append(child_error(number, form.label_of(field), message))
                form.add_error(field, message)
                continue
            if doc is None:
                message = str(_("a trigger document is required"))
                errors.append(child_error(number, form.label_of(field), message))
                form.add_error(field, message)
                continue
            try:
                limits.check_value(doc, path)
                spec = triggerspec.parse_trigger(
                    doc, path, max_children=max_children, max_depth=max_depth, _depth=1
                )
                if isinstance(spec, triggerspec.ManualSpec):
                    raise triggerspec.TriggerSpecError(f"{path}.type", "a manual trigger cannot be combined")
            except limits.LimitError as exc:
                errors.append(child_error(number, form.label_of(field), exc.message))
                form.add_error(field, exc.message)
            except triggerspec.TriggerSpecError as exc:
                message = i18n.trigger_error(exc)
                if field is None:
                    field = TRIGGER_FIELDS.get(exc.key)
                    field = field if field in form.fields else None
                else:
                    inner = exc.path[len(path) :].lstrip(".")  # the key inside the document
                    message = f"{inner}: {message}" if inner else message
                errors.append(child_error(number, form.label_of(field), message))
                form.add_error(field, message)
            else:
                documents.append(doc)
        return documents, errors


def child_error(number: int, field: str, message: str) -> str:
    return _("child %(number)s — %(field)s: %(message)s") % {
        "number": number,
        "field": field,
        "message": message,
    }


def child_trigger_formset(
    data: Any = None, *, children: list[Any] | None = None, preview_url: str | None = None
) -> ChildTriggerFormSet:
    """The child formset (prefix ``child``) with the configured caps, read now, not at
    import: at most ``TRIGGER_MAX_CHILDREN`` children; more forms posted are refused
    before they are built."""
    limit = int(app_settings.TRIGGER_MAX_CHILDREN)
    formset_class = forms.formset_factory(
        ChildTriggerForm,
        formset=ChildTriggerFormSet,
        extra=CHILD_EXTRA,
        can_delete=True,
        max_num=max(limit, len(children or ())),
        absolute_max=max(limit, len(children or ())) + CHILD_EXTRA,
    )
    initial = [ChildTriggerForm.initial_for(doc) for doc in children or ()]
    return formset_class(
        data, initial=initial or None, prefix="child", form_kwargs={"preview_url": preview_url}
    )


class ChildErrors(Exception):
    """The children of a combined trigger have errors (``errors``: one message each)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class ChildTriggersWidget(forms.Widget):
    """Renders the job form's child formset (``formset``, set by the form) in place of the
    "combined triggers" field; the formset reads its own data."""

    template_name = "admin/scheduler_app/job/child_triggers.html"
    formset: ChildTriggerFormSet | None = None

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["formset"] = self.formset
        return context

    def value_from_datadict(self, data: Any, files: Any, name: str) -> None:
        return None

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return False


class ChildTriggersField(forms.Field):
    """The "combined triggers" row: its value lives in the child formset."""

    widget = ChildTriggersWidget

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return False  # the form asks the formset (JobAdminForm.changed_data)


class WriteOnlyTextarea(forms.Textarea):
    """Never renders a value, not even the one just submitted: it is a secret."""

    def format_value(self, value: Any) -> None:
        return None


class PluginConfigError(ValueError):
    """The plugin trigger's settings are not a JSON object."""


class MissingPluginError(ValueError):
    """The trigger is of a type whose plugin is not loaded (the message says so)."""


class JobAdminForm(forms.ModelForm):
    task = forms.ChoiceField(label=_("task"), choices=(), help_text=_("A task registered in code."))
    trigger_type = forms.ChoiceField(label=_("Trigger"), choices=TRIGGER_TYPE_CHOICES)
    cron_expression = forms.CharField(
        label=_("Cron expression"),
        required=False,
        help_text=_('e.g. "0 2 L * *" (02:00 on the last day of the month), "0 9 * * MON-FRI".'),
        widget=forms.TextInput(attrs={"class": "vTextField", "data-cron-preview": "1"}),
    )
    cron_dialect = forms.ChoiceField(
        label=_("Dialect"),
        choices=DIALECT_CHOICES,
        required=False,
        initial="crontab",
    )
    trigger_timezone = forms.ChoiceField(
        label=_("Time zone"),
        required=False,
        choices=(),
        widget=ZoneSelect(),
        error_messages={
            "invalid_choice": _("Unknown time zone %(value)s: choose an IANA name from the list.")
        },
        help_text=_("IANA name, e.g. Europe/Berlin. Times on this page are shown in it."),
    )
    run_at = forms.CharField(
        label=_("Run at"),
        required=False,
        help_text=_("ISO 8601, e.g. 2026-12-01T09:00:00 (in the time zone) or with an offset."),
    )
    interval_seconds = forms.IntegerField(label=_("Every (seconds)"), required=False, min_value=1)
    interval_start = forms.CharField(label=_("Start"), required=False, help_text=_("ISO 8601; optional."))
    interval_end = forms.CharField(label=_("End"), required=False, help_text=_("ISO 8601; optional."))
    interval_jitter = forms.IntegerField(label=_("Jitter (seconds)"), required=False, min_value=0)
    plugin_config = _BlankJSONField(
        label=_("Plugin trigger settings (JSON)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
    )
    combination = ChildTriggersField(
        label=_("Combined triggers"),
        help_text=_(
            "For AND/OR: the triggers to combine (at least 2), each with the fields of a single "
            "trigger. Empty children are ignored; tick Delete to remove one."
        ),
    )

    secret_kwargs = forms.CharField(
        label=_("Secret kwargs"),
        required=False,
        strip=True,
        widget=WriteOnlyTextarea(attrs={"rows": 2, "cols": 80, "autocomplete": "off"}),
        help_text=_(
            "Write-only. A JSON object of credentials, stored encrypted and revealed only to "
            "the worker. Leave blank to keep the current secrets; {} removes them."
        ),
    )

    routing_tags = TagsField(
        label=_("Routing tags"),
        required=False,
        widget=forms.TextInput(attrs={"class": "vTextField", "placeholder": "gpu, eu-west"}),
        help_text=_("Comma-separated, e.g. gpu, eu-west. Used when routing is by tags."),
    )

    class Meta:
        model = Job
        exclude = ["trigger"]  # noqa: DJ006 - the trigger is built from the fields above
        field_classes = {
            "args": LimitedJSONField,
            "kwargs": LimitedJSONField,
            "routing_tags": LimitedJSONField,
        }
        widgets = {
            "args": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "kwargs": forms.Textarea(attrs={"rows": 3, "cols": 80}),
            "description": forms.Textarea(attrs={"rows": 2, "cols": 80}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = registry.names()
        current = self.instance.task if self.instance.pk else None
        choices = [("", "---------")] + [(n, str(registry.get(n))) for n in names]
        if current and current not in registry:
            choices.append((current, _("%(task)s (not registered)") % {"task": current}))
        self.fields["task"].choices = choices
        names = self.instance.secret_names if self.instance.pk else []
        if names:
            masked = ", ".join(f"{n}={MASK}" for n in names)
            self.fields["secret_kwargs"].help_text = _("%(help)s Current: %(names)s.") % {
                "help": self.fields["secret_kwargs"].help_text,
                "names": masked,
            }
        default_zone = settings.TIME_ZONE or "UTC"
        self.fields["trigger_timezone"].choices = [("", "—"), *zone_choices()]
        self.fields["trigger_timezone"].initial = default_zone
        self._add_plugin_types()
        self._stored_children: list[Any] = []
        if self.instance.pk:
            self._load_trigger(self.instance.trigger or {"type": "manual"})
        else:
            self.initial.setdefault("trigger_type", "cron")
            self.initial.setdefault("trigger_timezone", default_zone)
        current_zone = self.initial.get("trigger_timezone")
        if current_zone and current_zone not in zoneinfo.available_timezones():
            # a stored zone this system no longer lists stays selectable (and is checked on save)
            zone_field = self.fields["trigger_timezone"]
            zone_field.choices = [*zone_field.choices, (current_zone, current_zone)]
        self._follow_tenant()
        self.child_triggers = self._child_triggers()
        self.fields["combination"].widget.formset = self.child_triggers

    def _add_plugin_types(self) -> None:
        """Plugin trigger types are choices of the trigger select, edited as a JSON object
        (``plugin_config``) that the plugin's schema and validate() check on save. A stored
        trigger of a type whose plugin is gone stays shown (its type selected, its
        settings and the whole document visible) with a message naming the type; saving
        it as it is is refused (see :meth:`clean`), nothing is lost."""
        field = self.fields["trigger_type"]
        field.choices = [*TRIGGER_TYPE_CHOICES, *plugin_type_choices()]
        self.fields["plugin_config"].help_text = plugin_config_help()
        stored = self.instance.trigger if self.instance.pk else None
        self.missing_types = missing_trigger_types(stored)
        if not self.missing_types:
            return
        kind = stored.get("type")
        if kind in self.missing_types:
            field.choices = [*field.choices, (kind, _("%(name)s (plugin not installed)") % {"name": kind})]
        field.help_text = format_html(
            '<strong class="sa-missing-plugin">{}</strong><br>{}<pre>{}</pre>',
            missing_plugin_message(self.missing_types),
            _("The stored trigger:"),
            json.dumps(stored, indent=2, ensure_ascii=False, sort_keys=True),
        )

    def _follow_tenant(self) -> None:
        """Group and calendar choices follow the tenant: the job's, or the one chosen in
        the submitted form. With no tenant yet, every permitted one is listed and
        job_form.js hides the other tenants' groups once a tenant is chosen."""
        tenant_id: Any = self.instance.tenant_id
        if self.is_bound and "tenant" in self.fields:
            tenant_id = self.data.get(self.add_prefix("tenant")) or tenant_id
        if tenant_id is not None and not str(tenant_id).isdigit():
            tenant_id = None
        group = self.fields.get("group")
        # Only the choices shown are narrowed; a submitted group or calendar of another
        # tenant is reported by clean() with a message that says so.
        narrow = bool(tenant_id) and not self.is_bound
        if group is not None:
            if narrow:
                group.queryset = group.queryset.filter(tenant_id=tenant_id)
            widget = getattr(group.widget, "widget", group.widget)  # inside the related-object wrapper
            if isinstance(widget, forms.Select) and not isinstance(widget, TenantOptionSelect):
                replacement = TenantOptionSelect(attrs=widget.attrs)
                replacement.choices = widget.choices
                if widget is group.widget:
                    group.widget = replacement
                else:
                    group.widget.widget = replacement
        calendars = self.fields.get("calendars")
        if calendars is not None:
            if narrow:
                calendars.queryset = calendars.queryset.filter(tenant_id=tenant_id)
            # {calendar id: tenant id}, for job_form.js to keep only the chosen tenant's
            # calendars in SelectFilter2's boxes (SelectBox's caches).
            owners = {str(pk): str(t) for pk, t in calendars.queryset.values_list("pk", "tenant_id")}
            widget = getattr(calendars.widget, "widget", calendars.widget)
            widget.attrs["data-calendar-tenants"] = json.dumps(owners)

    def full_clean(self) -> None:
        super().full_clean()
        # Fields of the trigger types not chosen are hidden: their values are ignored,
        # so their errors (e.g. letters typed into "Every (seconds)" before switching to
        # cron) must not block the save either.
        kind = self.data.get(self.add_prefix("trigger_type")) if self.is_bound else None
        used = fields_of_type(kind)
        if used is not None and self._errors:
            for name in TRIGGER_FORM_FIELDS - used:
                self._errors.pop(name, None)

    def _load_trigger(self, doc: dict[str, Any]) -> None:
        kind = doc.get("type", "manual")
        self.initial.update(trigger_initial(doc))
        if kind in ("all", "any"):
            self._stored_children = list(doc.get("triggers") or [])

    def _child_triggers(self) -> ChildTriggerFormSet:
        """The child formset: bound to the submitted data when there is some (always when
        all/any is chosen), else showing the stored children."""
        data = None
        if self.is_bound:
            kind = self.data.get(self.add_prefix("trigger_type"))
            if kind in ("all", "any") or "child-TOTAL_FORMS" in self.data:
                data = self.data
        preview_url = self.fields["cron_expression"].widget.attrs.get("data-cron-preview-url")
        formset = child_trigger_formset(data, children=self._stored_children, preview_url=preview_url)
        formset.missing_types = self.missing_types
        return formset

    @cached_property
    def changed_data(self) -> list[str]:
        names = [n for n in super().changed_data if n != "combination"]
        kind = self.data.get(self.add_prefix("trigger_type")) if self.is_bound else None
        if kind in ("all", "any") and self.child_triggers.is_bound and self.child_triggers.has_changed():
            names.append("combination")
        return names

    def _trigger_document(self, data: dict[str, Any]) -> dict[str, Any]:
        kind = data.get("trigger_type")
        if kind in ("all", "any"):
            children, errors = self.child_triggers.children(
                max_children=app_settings.TRIGGER_MAX_CHILDREN, max_depth=app_settings.TRIGGER_MAX_DEPTH
            )
            if errors:
                raise ChildErrors(errors)
            return {"type": kind, "triggers": children}
        if kind in self.missing_types:
            raise MissingPluginError(missing_plugin_message([kind]))
        if fields_of_type(kind) is PLUGIN_FIELDS:
            config = data.get("plugin_config")
            if config is None:
                config = {}
            if not isinstance(config, dict):
                raise PluginConfigError(
                    _('Enter a JSON object of the trigger\'s settings, e.g. {"every": 2}.')
                )
            return {**{k: v for k, v in config.items() if k != "type"}, "type": kind}
        return single_trigger_document(data)

    def clean_secret_kwargs(self) -> dict[str, Any] | None:
        text = self.cleaned_data.get("secret_kwargs") or ""
        if not text:
            return None  # keep the stored secrets
        try:
            value = limits.loads_json(text, depth=limits.max_depth(), field="secret_kwargs")
            limits.check_value(value, "secret_kwargs")
        except limits.LimitError as exc:
            raise ValidationError(exc.message) from None
        except ValueError:
            # Never echo the input back: it is a secret.
            raise ValidationError(_("Enter a valid JSON object.")) from None
        if not isinstance(value, dict):
            raise ValidationError(_('Enter a JSON object, e.g. {"token": "..."}.'))
        self.instance.secret_kwargs = value
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        owner = getattr(self.instance, "managed_by", "")
        changed = sorted(set(self.changed_data) - {"paused"})
        if owner and self.instance.pk and changed:
            raise ValidationError(
                _(
                    "This job is managed by code in %(module)s; change %(fields)s there "
                    "(here you may only pause and resume it)."
                )
                % {"module": owner, "fields": ", ".join(changed)}
            )
        if "trigger_type" not in data:
            return data
        try:
            doc = self._trigger_document(data)
            limits.check_value(doc, "trigger")
            spec = triggerspec.parse_trigger(
                doc, max_children=app_settings.TRIGGER_MAX_CHILDREN, max_depth=app_settings.TRIGGER_MAX_DEPTH
            )
        except ChildErrors as exc:
            self.add_error("combination", ValidationError(exc.errors))
        except PluginConfigError as exc:
            self.add_error("plugin_config", str(exc))
        except MissingPluginError as exc:
            self.add_error("trigger_type", str(exc))
        except limits.LimitError as exc:
            self.add_error("combination" if data["trigger_type"] in ("all", "any") else None, exc.message)
        except triggerspec.TriggerSpecError as exc:
            kind = data["trigger_type"]
            if fields_of_type(kind) is PLUGIN_FIELDS:
                # "every: must be ..." — the key inside the JSON object, or the whole of it
                key = exc.path.partition(".")[2]
                self.add_error("plugin_config", f"{key}: {exc.message}" if key else exc.message)
            else:
                field = "combination" if kind in ("all", "any") else TRIGGER_FIELDS.get(exc.key)
                message = i18n.trigger_error(exc, with_path=not field or field == "combination")
                self.add_error(field if field in self.fields else None, message)
        else:
            self.instance.trigger = spec.to_dict()
        tenant = data.get("tenant")
        name = data.get("name")
        if tenant and name:
            same = Job.objects.filter(tenant=tenant, name=name).exclude(pk=self.instance.pk)
            if same.exists():
                self.add_error(
                    "name",
                    _("Tenant %(tenant)s already has a job named %(name)s.")
                    % {"tenant": tenant, "name": repr(name)},
                )
        group = data.get("group")
        if tenant and group and group.tenant_id != tenant.pk:
            self.add_error("group", _("The group belongs to another tenant."))
        calendars = data.get("calendars")
        if tenant and calendars:
            foreign = [c.name for c in calendars if c.tenant_id != tenant.pk]
            if foreign:
                self.add_error(
                    "calendars",
                    _("Calendar(s) of another tenant: %(names)s.") % {"names": ", ".join(foreign)},
                )
        return data

    def add_error(self, field: str | None, error: Any) -> None:
        # Model validation runs on the instance even for fields whose form value was
        # rejected (e.g. kwargs that are not JSON are checked as {}): drop those follow-on
        # messages so each field shows only its real error.
        if field in TRIGGER_FORM_FIELDS and field in (self._errors or {}):
            return  # "Enter a whole number." says it; "... is required" would only follow on
        if field is None and isinstance(error, ValidationError) and hasattr(error, "error_dict"):
            rejected = {f for f in (self._errors or {}) if f in self.fields}
            kept = {k: v for k, v in error.error_dict.items() if k not in rejected}
            if "trigger" in kept:
                # The model checks the trigger the form left on the instance: the stored
                # one when the form's trigger was refused (already reported on its field,
                # e.g. a type whose plugin is gone). Never a 500 for a field not on the form.
                messages = kept.pop("trigger")
                if not rejected & {"trigger_type", "combination", *TRIGGER_FORM_FIELDS}:
                    kept.setdefault("trigger_type", []).extend(messages)
            if not kept:
                return
            error = ValidationError(kept)
        super().add_error(field, error)


class ServiceCheckedForm(forms.ModelForm):
    """A model form whose instance, once the model's own validation passed, is checked by
    the services with the acting user (``actor``, set by the admin's ``get_form``):
    a refusal is shown on the field it names (or above the form), and nothing is
    written; the admin then saves through the same service."""

    actor: Any = None

    def service_check(self) -> None:
        """Raise ValidationError or PermissionDenied as the service would on save."""

    def _post_clean(self) -> None:
        super()._post_clean()
        if self._errors:
            return  # the model's own messages say it; the service would repeat them
        from django.core.exceptions import PermissionDenied

        try:
            self.service_check()
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
        except PermissionDenied as exc:
            self.add_error(None, str(exc) or _("You may not make this change."))


class JobGroupAdminForm(ServiceCheckedForm):
    def service_check(self) -> None:
        from scheduler_app import services

        services.check_group_save(self.instance, self.actor)


class CalendarAdminForm(ServiceCheckedForm):
    def service_check(self) -> None:
        from scheduler_app import services

        services.check_calendar_save(self.instance, self.actor)


class DependencyAdminForm(ServiceCheckedForm):
    def service_check(self) -> None:
        from scheduler_app import services

        services.check_dependency_save(self.instance, self.actor)


class TenantAdminForm(ServiceCheckedForm):
    def service_check(self) -> None:
        from scheduler_app import services

        services.check_tenant_save(self.instance, self.actor)


class MoveToGroupForm(forms.Form):
    group = forms.ModelChoiceField(
        queryset=JobGroup.objects.none(), required=False, empty_label=_("(no group)")
    )


class RunNowForm(forms.Form):
    kwargs_override = LimitedJSONField(
        required=False,
        initial=dict,
        label=_("Keyword arguments to override"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )


class UpstreamEdgeForm(forms.ModelForm):
    """A row of the "depends on" inline. ``JobDependency.clean()`` reports on
    ``downstream``, which is this inline's hidden key: show it on ``upstream``."""

    def add_error(self, field: str | None, error: Any) -> None:
        if field == "downstream":
            field = "upstream"
        elif field is None and isinstance(error, ValidationError) and hasattr(error, "error_dict"):
            errors = dict(error.error_dict)
            if "downstream" in errors:
                errors["upstream"] = errors.get("upstream", []) + errors.pop("downstream")
                error = ValidationError(errors)
        super().add_error(field, error)


class DependencyFormSet(BaseInlineFormSet):
    """The job page's dependency inlines. Each row is validated by
    ``JobDependency.clean()`` against the database, which cannot see a job being added
    (no id yet) nor an upstream and a downstream row saved together; this checks those.

    ``siblings`` is shared by the two inlines of one request (see
    ``JobAdmin.get_formsets_with_inlines``), keyed by the inline's foreign key name."""

    siblings: dict[str, DependencyFormSet] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.siblings is not None:
            self.siblings[self.fk.name] = self

    @property
    def chosen_field(self) -> str:
        """The visible column: the other end of the edge."""
        return "upstream" if self.fk.name == "downstream" else "downstream"

    def kept_rows(self) -> list[tuple[forms.Form, Job]]:
        rows = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or (self.can_delete and self._should_delete_form(form)):
                continue
            if data.get(self.chosen_field) is not None:
                rows.append((form, data[self.chosen_field]))
        return rows

    user: Any = None

    def clean(self) -> None:
        super().clean()
        job = self.instance
        if self.user is not None and self.chosen_field == "downstream":
            from scheduler_app.services import permissions

            refused = []
            for form in self.forms:
                deleted = self.can_delete and self._should_delete_form(form)
                if not (form.has_changed() or deleted):
                    continue
                before = form.instance.downstream if form.instance.pk else None
                after = None if deleted else (getattr(form, "cleaned_data", None) or {}).get("downstream")
                for other in {before, after} - {None}:
                    if not permissions.can(self.user, "change", other):
                        refused.append(str(other))
            if refused:
                raise ValidationError(
                    _("You may not change %(jobs)s, so you cannot change what it depends on.")
                    % {"jobs": ", ".join(sorted(set(refused)))}
                )
        if job.tenant_id is None:
            return
        for form, other in self.kept_rows():
            if form.errors or other.tenant_id == job.tenant_id:
                continue
            up, down = (other, job) if self.chosen_field == "upstream" else (job, other)
            form.add_error(
                self.chosen_field,
                _(
                    "Dependencies cannot cross tenants: %(up)s is in %(up_tenant)s, %(down)s is in %(down_tenant)s."
                )
                % {"up": up, "up_tenant": up.tenant, "down": down, "down_tenant": down.tenant},
            )
        upstream_rows = (self.siblings or {}).get("downstream")
        if self.fk.name != "upstream" or upstream_rows is None or not upstream_rows.is_valid():
            return  # checked once, from the downstream inline, when both are valid
        upstream_ids = {other.pk for _form, other in upstream_rows.kept_rows()}
        if not upstream_ids:
            return
        edges: dict[int, list[int]] = {}
        others = JobDependency.objects.filter(tenant_id=job.tenant_id)
        if job.pk is not None:  # the job's own edges are what these rows replace
            others = others.exclude(upstream_id=job.pk).exclude(downstream_id=job.pk)
        for up_id, down_id in others.values_list("upstream_id", "downstream_id"):
            edges.setdefault(up_id, []).append(down_id)
        for form, other in self.kept_rows():
            if form.errors:
                continue
            path = _path_to_any(other.pk, upstream_ids, edges)
            if path:
                names = dict(Job.objects.filter(pk__in=path).values_list("pk", "name"))
                chain = " → ".join([str(job.name), *(names[pk] for pk in path), str(job.name)])
                form.add_error(
                    "downstream", _("This dependency would create a cycle: %(chain)s.") % {"chain": chain}
                )


def _path_to_any(start: int, goals: set[int], edges: dict[int, list[int]]) -> list[int]:
    """Job ids from ``start`` to the first reachable of ``goals`` (breadth first)."""
    parents: dict[int, int | None] = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            if node in goals:
                path = [node]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])  # type: ignore[arg-type]
                return list(reversed(path))
            for child in edges.get(node, ()):
                if child not in parents:
                    parents[child] = node
                    nxt.append(child)
        frontier = nxt
    return []
