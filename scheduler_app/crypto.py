"""Encryption of job secrets with Fernet (cryptography), keys from the settings or the
environment, newest first, through MultiFernet so that old ciphertext stays readable
until ``rotatekeys`` re-encrypts it with the newest key.

Keys come from ``SCHEDULER_APP["ENCRYPTION_KEYS"]`` (a list) or, when that is empty, the
environment variable ``SCHEDULER_APP_ENCRYPTION_KEYS`` (comma-separated). Generate one with::

    python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy as _

from scheduler_app.conf import app_settings
from scheduler_app.engine.results import MASK

__all__ = ["MASK", "SecretsError", "decrypt", "encrypt", "fingerprint", "rotate"]

ENV_VAR = "SCHEDULER_APP_ENCRYPTION_KEYS"


def _text(message: Any, params: dict[str, Any]) -> str:
    return str(message) % params if params else str(message)


#: A message with its parameters, in the language active when it is shown (these
#: texts are made where no request's language is known yet, and kept for later).
lazy_text = lazy(_text, str)

GENERATE_HINT = lazy_text(
    _(
        'Generate a key with: python -c "from cryptography.fernet import Fernet; '
        'print(Fernet.generate_key().decode())" and put it in %(variable)s (newest first, '
        "comma-separated) or SCHEDULER_APP['ENCRYPTION_KEYS']."
    ),
    {"variable": ENV_VAR},
)


class SecretsError(ValueError):
    """Secrets cannot be encrypted or decrypted (no key, wrong key, damaged data).
    ``str()`` gives the reason in the active language."""

    def __init__(self, message: Any, **params: Any) -> None:
        super().__init__(message)
        self.message, self.params = message, params

    def __str__(self) -> str:
        return _text(self.message, self.params)


def configured_keys() -> list[str]:
    keys = list(app_settings.ENCRYPTION_KEYS or [])
    if not keys:
        keys = [k.strip() for k in os.environ.get(ENV_VAR, "").split(",") if k.strip()]
    return keys


def key_problems() -> list[str]:
    """Why the configured keys are unusable; empty when they are fine."""
    keys = configured_keys()
    if not keys:
        return [lazy_text(_("no encryption key is configured"), {})]
    problems = []
    for index, key in enumerate(keys):
        try:
            Fernet(key.encode() if isinstance(key, str) else key)
        except (ValueError, TypeError):
            problems.append(
                lazy_text(
                    _("key #%(number)s is not a valid Fernet key (32 url-safe base64 bytes)"),
                    {"number": index + 1},
                )
            )
    return problems


def _fernet() -> MultiFernet:
    problems = key_problems()
    if problems:
        raise SecretsError(
            _("cannot use secrets: %(problem)s. %(hint)s"), problem=problems[0], hint=GENERATE_HINT
        )
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in configured_keys()])


def encrypt(values: dict[str, Any]) -> str:
    """Ciphertext (a Fernet token) of a JSON object, with the newest key."""
    return _fernet().encrypt(json.dumps(values, sort_keys=True).encode()).decode()


def decrypt(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        data = _fernet().decrypt(token.encode())
    except InvalidToken:
        raise SecretsError(
            _(
                "the secret kwargs cannot be decrypted with any configured key "
                "(was the key that encrypted them removed?)"
            )
        ) from None
    value = json.loads(data)
    if not isinstance(value, dict):
        raise SecretsError(_("the decrypted secret kwargs are not an object"))
    return value


def rotate(token: str) -> str:
    """The same secrets, re-encrypted with the newest key."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretsError(_("cannot rotate: no configured key decrypts this secret")) from None


def is_current(token: str) -> bool:
    """Whether ``token`` is already encrypted with the newest key."""
    newest = Fernet(configured_keys()[0].encode())
    try:
        newest.decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def fingerprint(name: str, value: Any) -> str:
    """A short keyed digest of one secret value: shows *that* it changed between
    versions without revealing it (keyed with Django's SECRET_KEY, so it cannot be
    brute-forced offline, and stable across encryption-key rotations)."""
    from django.utils.crypto import salted_hmac

    message = f"{name}={json.dumps(value, sort_keys=True)}"
    return salted_hmac("scheduler_app.secret-fingerprint", message, algorithm="sha256").hexdigest()[:12]
