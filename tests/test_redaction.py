"""Redaction (:mod:`aurora_kit.redaction`) and the one JSON conversion of records: pure functions, no kernel."""

from __future__ import annotations

import json
from typing import Any

import nbformat
import pytest

from aurora_kit.backends.base import REDACTED
from aurora_kit.redaction import Redactor, redact_patterns, secret_digest


def test_patterns_redact_common_secret_shapes_and_keep_ordinary_text() -> None:
    cases = {
        "PGPASSWORD=s3cr3t psql": f"PGPASSWORD={REDACTED} psql",
        '{"password": "pw1"}': f'{{"password": "{REDACTED}"}}',
        '{"password":"pw0"}': f'{{"password":"{REDACTED}"}}',
        "password: pw4": f"password: {REDACTED}",
        "master_password = 'pw2'": f"master_password = '{REDACTED}'",
        "postgresql://app:pw3@db:5432/app": f"postgresql://app:{REDACTED}@db:5432/app",
        "X-Amz-Signature=abc123&x=1": f"X-Amz-Signature={REDACTED}&x=1",
        "key AKIAIOSFODNN7EXAMPLE": f"key {REDACTED}",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": REDACTED,
    }
    for text, expected in cases.items():
        assert redact_patterns(text) == expected
    ordinary = (
        "rev 36e03d2d4f20c7fcb03c9ee3321bed13ed2c4054 writer ak-local-1 lag 0.2s host=localhost port=5432 "
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!cluster-abc"
    )
    assert redact_patterns(ordinary) == ordinary
    assert redact_patterns(redact_patterns("password=x1")) == f"password={REDACTED}"


def test_registered_digest_redacts_every_occurrence() -> None:
    key = b"k" * 32
    r = Redactor(key=key)
    r.add_digest(10, secret_digest(key, "0123456789"))
    assert r.text("a0123456789b 0123456789") == f"a{REDACTED}b {REDACTED}"
    assert r.text("012345678") == "012345678"


def test_a_value_or_digest_added_later_redacts_text_already_seen() -> None:
    """values() and text() are cached (every save redacts every source again): a secret learnt after a first
    redaction of the same text must still be redacted the next time."""
    key = b"k" * 32
    r = Redactor(key=key)
    source = "first s3cr3t-value-1, then tok-value-22"
    assert r.values(source) == source
    assert r.text(source) == source
    r.add_digest(len("s3cr3t-value-1"), secret_digest(key, "s3cr3t-value-1"))
    assert "s3cr3t-value-1" not in r.values(source)
    assert "s3cr3t-value-1" not in r.text(source)
    r.add(["tok-value-22"])
    assert "tok-value-22" not in r.values(source)
    assert "tok-value-22" not in r.text(source)


def test_secret_keys_are_redacted_but_secret_identifiers_kept() -> None:
    r = Redactor()
    data = {"MasterUserSecretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:x", "Password": "pw", "a": [{"token": 1}]}
    assert r.obj(data) == {
        "MasterUserSecretArn": data["MasterUserSecretArn"],
        "Password": REDACTED,
        "a": [{"token": REDACTED}],
    }


def test_a_secret_split_across_stream_chunks_is_still_redacted() -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(...)")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="conn PGPASS"),
        nbformat.v4.new_output("stream", name="stdout", text="WORD=abc123 and s3cr"),
        nbformat.v4.new_output("stream", name="stdout", text="etvalue\n"),
    ]
    nb.cells = [cell]
    out = Redactor(["s3cretvalue"]).redacted_copy(nb)
    assert [o.text for o in out.cells[0].outputs] == [f"conn PGPASSWORD={REDACTED} and {REDACTED}\n"]
    assert len(nb.cells[0].outputs) == 3  # the live notebook is untouched


def test_one_jsonable_for_recorded_results_and_check_summaries() -> None:
    import dataclasses
    from datetime import date, datetime, timezone

    from aurora_kit import jsonable as jsonable_mod
    from aurora_kit import runbook
    from aurora_kit.checks import result as _display

    assert runbook.jsonable is _display.jsonable is jsonable_mod.jsonable

    @dataclasses.dataclass
    class Point:
        at: datetime
        tags: frozenset[str]

    class Scalar:  # numpy-like
        def item(self) -> float:
            return 1.5

    at = datetime(2026, 11, 26, 23, 0, tzinfo=timezone.utc)
    value = {1: Point(at, frozenset({"a"})), "d": date(2026, 11, 26), "n": Scalar(), "t": (1, None)}
    expected = {"1": {"at": at.isoformat(), "tags": ["a"]}, "d": "2026-11-26", "n": 1.5, "t": [1, None]}
    assert jsonable_mod.jsonable(value) == expected
    assert jsonable_mod.jsonable(value, strict=False) == expected
    with pytest.raises(TypeError, match="cannot record a object"):
        runbook.record_result("x", {"thing": object()})
    assert jsonable_mod.jsonable({"thing": Ellipsis}, strict=False) == {"thing": "Ellipsis"}

    class Check(_display.CheckResult):
        def problems(self) -> list[str]:
            return []

        def summary(self) -> dict[str, Any]:
            return {"point": Point(at, frozenset()), "odd": Ellipsis}

    assert json.loads(Check().to_json()) == {"odd": "Ellipsis", "point": {"at": at.isoformat(), "tags": []}}


# -- property-based: a secret in any of the shapes it travels in -----------------------------------------------
import html as _html  # noqa: E402
import json as _json  # noqa: E402
import shlex  # noqa: E402
import urllib.parse  # noqa: E402

import yaml  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ALPHABET = st.characters(codec="ascii", categories=("L", "N", "P", "S", "Zs"))
SECRETS = st.text(_ALPHABET, min_size=8, max_size=30).filter(
    lambda s: s.strip() == s and sum(c.isalnum() for c in s) >= 4
)


def _libpq(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


SHAPES = {
    "conninfo": lambda s: f"host=db port=5432 password={_libpq(s)} dbname=app",
    "uri": lambda s: f"postgresql://app:{urllib.parse.quote(s, safe='')}@db:5432/app",
    "json": lambda s: _json.dumps({"user": "app", "password": s}),
    "json in a string": lambda s: _json.dumps({"note": _json.dumps({"password": s})}),
    "python repr": lambda s: repr({"db_password": s, "user": "app"}),
    "yaml": lambda s: yaml.safe_dump({"master_password": s, "user": "app"}),
    "env": lambda s: f"export PGPASSWORD={shlex.quote(s)}\nPATH=/usr/bin",
    "assignment": lambda s: f"secret_token = {s!r}",
}


def _leaks(secret: str, text: str, template: str) -> list[str]:
    """Pieces of ``secret`` (4+ alphanumerics in a row) still in ``text`` that the template alone does not hold."""
    pieces = {p for p in __import__("re").findall(r"[A-Za-z0-9]{4,}", secret) if p not in template}
    shown = text.replace(REDACTED, "")  # "redacted" itself is no leak
    return sorted(p for p in pieces if p in shown)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@settings(max_examples=60, deadline=None)
@given(secret=SECRETS)
def test_a_secret_in_any_shape_is_redacted(shape: str, secret: str) -> None:
    text = SHAPES[shape](secret)
    template = SHAPES[shape]("x" * 8)
    for variant in (text, _html.escape(text)):  # as printed, and as the HTML record shows it
        out = redact_patterns(variant)
        assert REDACTED in out
        assert not _leaks(secret, out, template), (shape, variant, out)


def test_the_quoted_forms_the_review_found() -> None:
    assert redact_patterns("password='A B' host=x") == f"password='{REDACTED}' host=x"
    assert (
        redact_patterns('{"note": "{\\"password\\": \\"X1y2\\"}"}')
        == f'{{"note": "{{\\"password\\": \\"{REDACTED}\\"}}"}}'
    )
    assert "hunter2" not in redact_patterns(_html.escape('{"password": "hunter2 pw"}'))
