"""No secret in a log line, at any verbosity.

botocore's debug log shows request and response bodies and headers: STS role
credentials, `X-Amz-Security-Token`, decrypted SSM parameters (the vault password), KMS
plaintexts. `SecretFilter` rewrites every record that reaches builder's log handler:

- by shape: the fields that carry credentials and secret payloads in AWS's XML and JSON
  (SecretAccessKey, SessionToken, Plaintext, an SSM parameter's Value, ...), the security
  token header, and access key ids;
- by value: every secret builder itself has held (the vault password, SSM values it
  read, the credentials it hands Packer) is registered with `remember` and replaced
  wherever it appears, whatever the shape of the line.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

# Keys whose value is a secret, wherever they appear (JSON, XML, headers, repr of dicts).
_SECRET_KEYS = "|".join((
    "SecretAccessKey", "SessionToken", "SecurityToken", "X-Amz-Security-Token",
    "aws_secret_access_key", "aws_session_token", "secret_key", "token", "Plaintext",
    "CiphertextBlob", "password", "passwd", "vault_password", "PrivateKey", "KeyMaterial"))
# A quoted value: "..." or '...' (b'...' too), escapes included.
_QUOTED = r"""(?P<quote>["'])(?:\\.|(?!(?P=quote)).)*(?P=quote)"""
_XML_RE = re.compile(rf"<({_SECRET_KEYS})>[^<]*</\1>", re.IGNORECASE)
# "Key": "value", 'Key': b'value', Key=value (headers and query strings).
_QUOTED_RE = re.compile(rf"""(?P<head>["']?(?:{_SECRET_KEYS})["']?\s*[:=]\s*b?){_QUOTED}""",
                        re.IGNORECASE)
_BARE_RE = re.compile(rf"(?P<head>\b(?:{_SECRET_KEYS})=)[^\s&,;'\"]+", re.IGNORECASE)
# SSM: a parameter's value (GetParameter(s), GetParametersByPath, PutParameter).
_SSM_VALUE_RE = re.compile(rf"""(?P<head>["']Value["']\s*:\s*b?){_QUOTED}""")
_SSM_HINT_RE = re.compile(r"Parameter|SecureString|ssm\.", re.IGNORECASE)
# Access key ids (long-lived AKIA, temporary ASIA): not secret alone, but half a pair.
_ACCESS_KEY_RE = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}\b")
# Values that would mask half the log if remembered (empty, "true", short words).
_MIN_SECRET_LENGTH = 6

# Key names that look secret: messages show such a key's type, never its value.
SECRET_KEY_RE = re.compile(r"pass(word|wd|phrase)?|secret|token|private|credential|"
                           r"api_?key|access_?key", re.IGNORECASE)


def remember(*values: str | None) -> None:
    """Secrets builder holds: masked wherever they appear in a log line from now on."""
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET_LENGTH)


def looks_secret(key: str) -> bool:
    """Whether a var's name says its value is a secret (db_password, api_token, ...)."""
    return bool(SECRET_KEY_RE.search(key))


def redact(text: str) -> str:
    """`text` with every known secret and every secret-shaped field masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _XML_RE.sub(lambda m: f"<{m[1]}>{MASK}</{m[1]}>", text)
    text = _QUOTED_RE.sub(lambda m: f"{m['head']}{m['quote']}{MASK}{m['quote']}", text)
    text = _BARE_RE.sub(lambda m: f"{m['head']}{MASK}", text)
    if _SSM_HINT_RE.search(text):
        text = _SSM_VALUE_RE.sub(lambda m: f"{m['head']}{m['quote']}{MASK}{m['quote']}", text)
    return _ACCESS_KEY_RE.sub(lambda m: f"{m[1]}{MASK}", text)


class SecretFilter(logging.Filter):
    """Masks secrets in a record's formatted message (and its traceback text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(handler: logging.Handler) -> logging.Handler:
    """Put the filter on a handler: it then sees every logger's records (builder's,
    botocore's, urllib3's), which a filter on one logger would not (child loggers'
    records skip their parents' filters)."""
    handler.addFilter(SecretFilter())
    return handler
