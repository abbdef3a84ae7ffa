"""Redaction of secrets from notebooks before they touch disk.

Three sources of "what is secret", combined by :class:`Redactor`:

1. **Known values**: values of secret-looking parameters (:func:`aurora_kit.backends.base.redact`'s rule) and of
   secret-looking environment variables of the run (``PGPASSWORD``, ``AWS_SECRET_ACCESS_KEY``,
   ``AWS_SESSION_TOKEN``...), replaced wherever they occur.
2. **Values the kernel registers at run time** (:func:`aurora_kit.runbook.register_secret`, e.g. the generated
   local master password): the kernel never sends the value, only an HMAC of it keyed with a per-run key the
   engine hands the kernel through ``$AURORA_KIT_REDACTION_KEY``, plus its length, in a display output of
   mimetype :data:`SECRET_MIME`. The engine finds every substring with that length and HMAC.
3. **Patterns** for secrets nobody registered: ``password=…``/``"password": "…"``/``PGPASSWORD=…`` (any key
   containing password/passwd/secret/token), passwords in ``postgresql://user:pw@host`` URIs, AWS access key ids
   (``AKIA…``/``ASIA…``), 40-character AWS secret keys, SigV4 signatures/credentials/security tokens
   (``X-Amz-Signature=`` in IAM auth tokens and presigned URLs) and PEM private keys.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any

from aurora_kit.backends.base import REDACTED
from aurora_kit.rules import SECRET_WORD_PATTERN, is_secret_key

SECRET_MIME = "application/vnd.aurora-kit.secret+json"
KEY_ENV = "AURORA_KIT_REDACTION_KEY"
MIN_SECRET_LENGTH = 4  # shorter known values would redact ordinary text everywhere

_KEYWORD = r"[A-Za-z0-9_\-]*(?:" + SECRET_WORD_PATTERN + r")[A-Za-z0-9_\-]*"
PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL),
        REDACTED,
    ),
    # SigV4 query parameters (IAM database auth tokens, presigned URLs)
    (
        re.compile(r"(X-Amz-(?:Signature|Security-Token|Credential)=)[^&\s\"'<>]+", re.IGNORECASE),
        r"\g<1>" + REDACTED,
    ),
    # password inside a connection URI: scheme://user:password@host
    (re.compile(r"([a-z][a-z0-9+.\-]*://[^\s:/@\"']*:)[^\s@/\"']+(@)", re.IGNORECASE), r"\g<1>" + REDACTED + r"\2"),
    # AWS access key ids
    (re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[0-9A-Z]{16}\b"), REDACTED),
]
# a quote as it appears in text, code, JSON-in-a-string and HTML: ' or ", backslash-escaped or not, or an entity
_QUOTE = r"""(?:\\*(?:["']|&quot;|&\#0*39;|&\#x0*27;|&apos;))"""
# a secret-looking key, its closing quote if any, and the separator: = (conninfo, env, query strings), => or a
# colon before a space or a quote (JSON, YAML, dict reprs); a colon inside a word (ARNs: arn:aws:secretsmanager:...)
# is not a separator, so ARNs stay readable
_KEY_VALUE = re.compile(
    r"(?P<k>\b" + _KEYWORD + r"(?:" + _QUOTE + r")?\s*(?P<sep>=>|=|:(?=[ \t]|" + _QUOTE + r"))[ \t]*)"
    r"(?:(?P<q>" + _QUOTE + r")(?P<qv>(?:\\.|(?P=q)(?P=q)|(?!(?P=q))[^\n])*)(?P=q)"  # quoted: to the same quote
    # what follows the closing quote as part of the same word: more quoted segments (a shell word '00'"'"' 0') or
    # characters up to a space (see _key_value)
    r"(?P<tail>(?:(?P<tq>" + _QUOTE + r")(?:(?!(?P=tq))[^\n])*(?P=tq)|(?!" + _QUOTE + r")\S|" + _QUOTE + r")*)"
    r"|(?P<q2>" + _QUOTE + r")[^\n]*"  # an opening quote never closed on this line: the rest of the line
    r"|(?P<v>(?!" + _QUOTE + r")\S[^\n]*))",  # unquoted: where it ends depends on the form (see _key_value)
    re.IGNORECASE,
)


# key: value with the key bare (YAML, logs): whatever the quoting, the value is the rest of the line (YAML's '' and
# a backslash mean different things in different dialects; redacting the whole line is right in all of them)
_BARE_KEY_LINE = re.compile(
    r"(?P<k>(?<![\w\"';&\\-])" + _KEYWORD + r"[ \t]*:[ \t]+)(?!\*\*\*redacted\*\*\*\s*$)(?P<v>\S[^\n]*)",
    re.IGNORECASE,
)


def _key_value(match: re.Match[str]) -> str:
    key = match.group("k")
    if match.group("q") is not None:
        tail = match.group("tail")
        if match.group("qv") == REDACTED and not tail:
            return match.group(0)
        # after "=" (shell, env, conninfo) a word goes on to the next space: '00'"'"']00' is one value; after a
        # colon (JSON, YAML, reprs) what follows the quote is structure (} ] ,), kept
        kept = "" if match.group("sep") == "=" else tail
        return key + match.group("q") + REDACTED + match.group("q") + kept
    if match.group("q2") is not None:
        return key + match.group("q2") + REDACTED
    value = match.group("v")
    if value.startswith(REDACTED):
        return key + value
    if match.group("sep") == "=":  # conninfo, env lines, query strings: the value ends at a space or separator
        end = re.match(r"[^\s\"'&;<>]+", value)
        rest = value[end.end() :] if end else ""
        return key + REDACTED + rest
    if re.search(_QUOTE + r"\s*:", key):  # "key": 123, (JSON, dict reprs): the value ends at the structure
        end = re.match(r"[^,}\]\s]+", value)
        return key + REDACTED + (value[end.end() :] if end else value)
    # key: value (YAML, logs): a plain scalar may hold spaces and brackets; the value runs to the end of the line
    return key + REDACTED


# 40-character AWS secret access keys: base64-ish, with upper case, lower case and a digit (not a git sha)
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
#: the shell's working directories: "PWD" names a directory, not a password
_NOT_SECRET_ENV = frozenset({"PWD", "OLDPWD"})


def _aws_secret(match: re.Match[str]) -> str:
    s = match.group(0)
    if any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s):
        return REDACTED
    return s


def redact_patterns(text: str) -> str:
    """Apply the pattern rules only (no known values)."""
    for pattern, repl in PATTERNS:
        text = pattern.sub(repl, text)
    text = _BARE_KEY_LINE.sub(lambda m: m.group("k") + REDACTED, text)
    text = _KEY_VALUE.sub(_key_value, text)
    return _AWS_SECRET.sub(_aws_secret, text)


def secret_digest(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def secret_values(params: Mapping[str, Any]) -> set[str]:
    """Values (at any depth) of secret-looking keys."""
    found: set[str] = set()
    for key, value in params.items():
        if is_secret_key(str(key)):
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                found.add(str(value))
        elif isinstance(value, Mapping):
            found |= secret_values(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    found |= secret_values(item)
    return found


def env_secret_values(env: Mapping[str, str]) -> set[str]:
    """Values of secret-looking environment variables (PGPASSWORD, AWS_SECRET_ACCESS_KEY...)."""
    return {v for k, v in env.items() if is_secret_key(k) and k not in _NOT_SECRET_ENV and k != KEY_ENV and v}


class Redactor:
    """Redacts text and notebooks with known values, kernel-registered HMACs and patterns."""

    def __init__(self, known: Iterable[str] = (), *, key: bytes | None = None) -> None:
        self.known: set[str] = set()
        self.key = key
        self.digests: dict[int, set[str]] = {}
        self._cache: dict[str, str] = {}  # text() results
        self._values_cache: dict[str, str] = {}  # values() results: sources are redacted again at every save
        self.add(known)

    def add(self, values: Iterable[str]) -> None:
        new = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH and v != REDACTED}
        if new - self.known:
            self.known |= new
            self._forget()

    def add_digest(self, length: int, digest: str) -> None:
        if length >= MIN_SECRET_LENGTH and digest not in self.digests.get(length, set()):
            self.digests.setdefault(length, set()).add(digest)
            self._forget()

    def _forget(self) -> None:
        """A new known value or digest: every cached result may now redact more."""
        self._cache.clear()
        self._values_cache.clear()

    # -- text ------------------------------------------------------------------------------------------------
    def _hashed(self, text: str) -> str:
        if not self.key or not self.digests:
            return text
        for length, digests in self.digests.items():
            if len(text) < length:
                continue
            key = self.key
            hits = [
                i
                for i in range(len(text) - length + 1)
                if hmac.digest(key, text[i : i + length].encode(), "sha256").hex() in digests
            ]
            if not hits:
                continue
            out, last = [], 0
            for i in hits:
                if i < last:
                    continue
                out.append(text[last:i])
                out.append(REDACTED)
                last = i + length
            out.append(text[last:])
            text = "".join(out)
        return text

    def values(self, text: str) -> str:
        """Known and registered values only (used on code cells, where patterns would mangle source).

        Cached like :meth:`text` (a registered digest makes this one HMAC per position of ``text``, and papermill
        saves, so redacts, every cell's source twice per code cell run); the cache is emptied whenever a value or a
        digest is added."""
        cached = self._values_cache.get(text)
        if cached is not None:
            return cached
        original = text
        for value in sorted(self.known, key=len, reverse=True):
            if value in text:
                text = text.replace(value, REDACTED)
        text = self._hashed(text)
        self._values_cache[original] = text
        return text

    def text(self, text: str) -> str:
        """Known values, registered values, then patterns."""
        cached = self._cache.get(text)
        if cached is None:
            cached = redact_patterns(self.values(text))
            self._cache[text] = cached
        return cached

    def obj(self, value: Any, *, patterns: bool = True) -> Any:
        """Redact every string inside ``value`` (dicts, lists), keys with secret-looking names replaced."""
        if isinstance(value, str):
            return self.text(value) if patterns else self.values(value)
        if isinstance(value, Mapping):
            return {
                k: REDACTED if is_secret_key(str(k)) and v is not None else self.obj(v, patterns=patterns)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.obj(v, patterns=patterns) for v in value]
        return value

    # -- notebooks -------------------------------------------------------------------------------------------
    def absorb(self, nb: Any) -> None:
        """Collect the HMACs of secrets the kernel registered (outputs of :data:`SECRET_MIME`)."""
        for cell in nb.get("cells", []):
            for output in cell.get("outputs", []) or []:
                data = output.get("data") or {}
                marker = data.get(SECRET_MIME)
                if isinstance(marker, Mapping) and isinstance(marker.get("length"), int):
                    self.add_digest(int(marker["length"]), str(marker.get("hmac", "")))

    def redact_notebook(self, nb: Any) -> Any:
        """Redact ``nb`` in place (a NotebookNode or dict) and return it."""
        self.absorb(nb)
        meta = nb.get("metadata", {})
        pm = meta.get("papermill")
        if isinstance(pm, dict) and isinstance(pm.get("parameters"), Mapping):
            self.add(secret_values(pm["parameters"]))
            pm["parameters"] = _node_like(pm["parameters"], self.obj(dict(pm["parameters"])))
        for cell in nb.get("cells", []):
            tags = cell.get("metadata", {}).get("tags", [])
            injected = "injected-parameters" in tags
            if "source" in cell:
                cell["source"] = self.text(cell["source"]) if injected else self.values(cell["source"])
            if cell.get("outputs"):
                cell["outputs"] = _merge_streams(cell["outputs"])
            for output in cell.get("outputs", []) or []:
                _redact_output(self, output)
            if isinstance(cell.get("metadata", {}).get("papermill"), Mapping):
                pmc = cell["metadata"]["papermill"]
                for k, v in list(pmc.items()):
                    if isinstance(v, str):
                        pmc[k] = self.text(v)
        return nb

    def redacted_copy(self, nb: Any) -> Any:
        return self.redact_notebook(copy.deepcopy(nb))


def _node_like(original: Any, value: Any) -> Any:
    try:
        from nbformat import from_dict

        return from_dict(value) if hasattr(original, "keys") and type(original) is not dict else value
    except ImportError:  # pragma: no cover
        return value


def _merge_streams(outputs: list[Any]) -> list[Any]:
    """Join adjacent chunks of the same stream, so a secret printed across two chunks is still one string."""
    merged: list[Any] = []
    for output in outputs:
        last = merged[-1] if merged else None
        if (
            last is not None
            and output.get("output_type") == "stream"
            and last.get("output_type") == "stream"
            and last.get("name") == output.get("name")
        ):
            last["text"] = last.get("text", "") + output.get("text", "")
        else:
            merged.append(output)
    return merged


def _redact_output(redactor: Redactor, output: Any) -> None:
    kind = output.get("output_type")
    if kind == "stream":
        output["text"] = redactor.text(output.get("text", ""))
    elif kind == "error":
        output["evalue"] = redactor.text(output.get("evalue", ""))
        output["traceback"] = [redactor.text(line) for line in output.get("traceback", [])]
    if "data" in output:
        data = output["data"]
        for mime in list(data):
            if mime == SECRET_MIME or (mime.startswith("image/") and "svg" not in mime):
                continue  # markers hold only an HMAC; raster images are base64, not text
            data[mime] = _node_like(data[mime], redactor.obj(data[mime]))
