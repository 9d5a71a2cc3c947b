"""Secret inputs: placeholders carry the run's marker, only those are substituted, sealing
round-trips only with the same key."""

from __future__ import annotations

import pytest

from catalog.runs.secrets import (
    PLACEHOLDER,
    REDACTED,
    mark_inputs,
    mentions_secret,
    placeholder,
    resolve,
    seal,
    secret_input_names,
    unseal,
)

MARKER = "c0ffee"
SECRETS = {"token": "s3cret", "password": "hunter2"}


def test_placeholders_with_and_without_a_marker() -> None:
    assert placeholder("token", MARKER) == "${secret:c0ffee:token}"
    assert placeholder("token") == "${secret:token}"
    assert PLACEHOLDER.fullmatch(placeholder("token", MARKER))
    assert PLACEHOLDER.fullmatch(placeholder("token"))
    assert PLACEHOLDER.sub(REDACTED, f"Bearer {placeholder('token', MARKER)}") == f"Bearer {REDACTED}"


def test_secret_inputs_are_chosen_by_name_never_by_the_shape_of_a_value() -> None:
    action = {"user_inputs": {"properties": {"token": {"secret": True}, "note": {"type": "string"}}}}
    names = secret_input_names(action)
    assert names == {"token"}
    assert secret_input_names({}) == set()
    looks_like_one = "${secret:c0ffee:password}"
    marked = mark_inputs({"token": "s3cret", "note": looks_like_one}, names, MARKER)
    assert marked == {"token": placeholder("token", MARKER), "note": looks_like_one}


def test_only_placeholders_bearing_the_runs_marker_are_substituted() -> None:
    params = {
        "headers": {"Authorization": f"Bearer {placeholder('token', MARKER)}"},
        "list": [placeholder("password", MARKER), 7],
        "foreign": placeholder("token", "badbad"),  # written into data by someone else
        "bare": placeholder("token"),
        "unknown": placeholder("nope", MARKER),
    }
    assert resolve(params, SECRETS, MARKER) == {
        "headers": {"Authorization": "Bearer s3cret"},
        "list": ["hunter2", 7],
        "foreign": placeholder("token", "badbad"),
        "bare": placeholder("token"),
        "unknown": placeholder("nope", MARKER),
    }
    assert resolve(params, SECRETS, "") == params, "an empty marker substitutes nothing"


def test_mentions_secret_looks_for_the_runs_marker_only() -> None:
    assert mentions_secret({"a": [f"x {placeholder('token', MARKER)}"]}, MARKER)
    assert not mentions_secret({"a": placeholder("token", "badbad")}, MARKER)
    assert not mentions_secret(placeholder("token", MARKER), "")
    assert not mentions_secret({"n": 1, "s": "plain"}, MARKER)


def test_sealed_values_open_only_with_the_same_key() -> None:
    token = seal(SECRETS, "key-one")
    assert "s3cret" not in token and "hunter2" not in token
    assert unseal(token, "key-one") == SECRETS
    with pytest.raises(ValueError, match="cannot be decrypted with this GANTRY_SECRET_KEY"):
        unseal(token, "key-two")
