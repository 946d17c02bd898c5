from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _

from scheduler_app import display
from scheduler_app.models import ApiKey, Role, Tenant
from scheduler_app.services import keys


class Command(BaseCommand):
    @property
    def help(self) -> str:  # translated in the language active when asked
        return _(
            "Manage API keys (Authorization: Bearer <key>). 'create' prints the new key once; "
            "only its digest is stored. 'list' shows keys by prefix; 'revoke PREFIX' stops a key "
            "at once. Creation and revocation are audited."
        )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="command", required=True, metavar="{create,list,revoke}")
        create = sub.add_parser("create", help=_("Create a key for a user and print it (once)."))
        create.add_argument("--user", required=True, help=_("User name of the key's owner."))
        create.add_argument("--tenant", help=_("Restrict the key to this tenant (slug)."))
        create.add_argument(
            "--role", choices=Role.values, help=_("Act with at most this role (not above the user's).")
        )
        create.add_argument("--expires", type=float, metavar="DAYS", help=_("Expire after DAYS days."))
        create.add_argument("--name", default="", help=_("What the key is for."))
        listing = sub.add_parser("list", help=_("List keys (prefix, owner, scope, last use, state)."))
        listing.add_argument("--user", help=_("Only this user's keys."))
        revoke = sub.add_parser("revoke", help=_("Revoke the key with this prefix."))
        revoke.add_argument("prefix", help=_("The key's prefix, as 'list' shows it (e.g. sk_Ab12Cd34)."))

    def handle(self, *args, command, **opts):
        getattr(self, f"_{command}")(**opts)

    def _user(self, username):
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(_("--user: no user named %(name)r") % {"name": username})
        return user

    def _create(self, user, tenant=None, role=None, expires=None, name="", **opts):
        owner = self._user(user)
        scope = None
        if tenant:
            scope = Tenant.objects.filter(slug=tenant).first()
            if scope is None:
                raise CommandError(_("--tenant: no tenant %(slug)r") % {"slug": tenant})
        if expires is not None and expires <= 0:
            raise CommandError(_("--expires: give a number of days greater than 0"))
        expires_at = timezone.now() + timedelta(days=expires) if expires is not None else None
        try:
            new = keys.create_key(owner, name=name, tenant=scope, role=role, expires_at=expires_at)
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"--{k.replace('_at', '')}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        self.stderr.write(
            _("created API key %(prefix)s for %(user)s; it is shown only now:")
            % {"prefix": new.key.prefix, "user": owner.get_username()}
        )
        self.stdout.write(new.token)

    def _list(self, user=None, **opts):
        qs = ApiKey.objects.select_related("user", "tenant").order_by("user__username", "-created_at")
        if user:
            qs = qs.filter(user=self._user(user))
        for key in qs:
            state = _("revoked") if key.revoked_at else (_("expired") if not key.is_usable else _("active"))
            self.stdout.write(
                "\t".join(
                    [
                        key.prefix,
                        key.user.get_username(),
                        key.tenant.slug if key.tenant_id else "*",
                        key.role or "*",
                        state,
                        _("last used %(time)s")
                        % {"time": display.when(key.last_used_at, timezone.get_current_timezone())}
                        if key.last_used_at
                        else _("never used"),
                        key.name,
                    ]
                )
            )

    def _revoke(self, prefix, **opts):
        key = ApiKey.objects.filter(prefix=prefix).select_related("user").first()
        if key is None:
            raise CommandError(
                _("no API key with prefix %(prefix)r (see 'apikey list')") % {"prefix": prefix}
            )
        if keys.revoke_key(key):
            self.stdout.write(
                _("revoked %(prefix)s of %(user)s") % {"prefix": key.prefix, "user": key.user.get_username()}
            )
        else:
            self.stdout.write(_("%(prefix)s was already revoked") % {"prefix": key.prefix})
