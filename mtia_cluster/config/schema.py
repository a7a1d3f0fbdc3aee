"""Typed config documents: one strict pydantic base, errors as one UserError line.

Every config file shape (scenario, rollout plan, trace spec, catalog entries) is a pydantic v2
model derived from :class:`Strict`: unknown keys, wrong types (no string-to-number coercion)
and out-of-range values are refused. :func:`validate` turns pydantic's first error into the
project's one channel, ``UserError(message, file=, field=, value=)``, with the field path
written ``regions[0].pools[1].tp`` and a did-you-mean (difflib) for a misspelled key or
choice. :func:`check_path` checks a ``--set a.b.c`` path against the same models before it is
applied, so an override cannot add a key the file could not hold.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Tag, ValidationError

from mtia_cluster.errors import UserError, did_you_mean

M = TypeVar("M", bound=BaseModel)

# Union member tags carry a colon, which no config key has, so they are dropped from paths.
_TAG_MARK = ":"


class Strict(BaseModel):
    """Base of every config model: unknown keys, coercions and NaN/inf are refused."""

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, frozen=True, populate_by_name=False
    )


def dotted(loc: Sequence[Any]) -> str:
    """``("regions", 0, "pools", 1, "tp")`` as ``regions[0].pools[1].tp`` (tags dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _TAG_MARK in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def validate(
    model: type[M],
    data: Any,
    file: str | Path | None = None,
    *,
    prefix: str = "",
    context: dict[str, Any] | None = None,
) -> M:
    """`data` validated as `model`, or the first problem as a UserError (one line)."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise to_user_error(exc, model, file, prefix) from None


def to_user_error(
    exc: ValidationError, model: Any, file: str | Path | None, prefix: str = ""
) -> UserError:
    """The first error of `exc` (an unknown key first) as a UserError naming file, dotted
    field and value."""
    errors = exc.errors(include_url=False)
    # A misspelled key is both unknown and (its real name) missing, and a misspelled tag key
    # (``modle:``, ``proces:``) makes the other keys look like another kind's: name the
    # key no kind knows first, then any unknown key, then the first error.
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    foreign = [e for e in extra if not _other_kinds_key(model, tuple(e["loc"]))]
    err = (foreign or extra or errors)[0]
    loc = tuple(err["loc"])
    field = dotted(loc)
    if prefix:
        field = f"{prefix}.{field}" if field else prefix
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        return _unknown_key(model, loc, field, file)
    if kind == "union_tag_invalid":
        return _unknown_kind(model, loc, field, file, err.get("ctx") or {}, value)
    if kind == "missing":
        return UserError("missing required field", file=file, field=field or None)
    if kind == "literal_error":
        choices = sorted(_literal_choices(_annotation_at(model, loc)))
        message = f"must be one of {', '.join(choices)}" if choices else "not a valid choice"
        message += _close(str(value), choices)
    elif kind in _MESSAGES:
        message = _MESSAGES[kind].format(**(err.get("ctx") or {}))
    else:
        message = str(err["msg"]).removeprefix("Value error, ")
    if isinstance(value, Mapping | list):
        if kind == "value_error":  # a model's own check: its message names the values
            return UserError(message, file=file, field=field or None)
        value = type(value).__name__
    return UserError(message, file=file, field=field or None, value=value, has_value=True)


def _unknown_key(model: Any, loc: tuple[Any, ...], field: str, file: Any) -> UserError:
    """An unknown key: another kind's ("not a key of pool kind 'rr'") or a near miss."""
    known = sorted(field_names(_annotation_at(model, loc[:-1])))
    if _other_kinds_key(model, loc):
        noun, _, kind_name = str(loc[-2]).partition(_TAG_MARK)
        message = f"not a key of {noun} kind {kind_name!r} (keys: {', '.join(known)})"
    else:
        message = "unknown key" + did_you_mean(str(loc[-1]), known, "expected one of")
    return UserError(message, file=file, field=field or None)


def _unknown_kind(
    model: Any, loc: tuple[Any, ...], field: str, file: Any, ctx: dict[str, Any], value: Any
) -> UserError:
    """A tagged union whose choosing key (``kind``, ``process``, ``dist``) names no member,
    or is absent (then a key no member knows is most likely its misspelling)."""
    noun, _, got = str(ctx.get("tag", "")).partition(_TAG_MARK)
    tags = str(ctx.get("expected_tags")).split(",")
    expected = sorted(t.strip(" '").partition(_TAG_MARK)[2] for t in tags)
    key = TAG_KEYS.get(noun, "kind")
    where = f"{field}.{key}" if field else key
    if got != "None":
        message = f"must be one of {', '.join(expected)}" + _close(got, expected)
        return UserError(message, file=file, field=where, value=got)
    members = sorted(field_names(_annotation_at(model, loc)))
    unknown = [str(k) for k in value if str(k) not in members] if isinstance(value, dict) else []
    if unknown:
        return UserError(
            "unknown key" + did_you_mean(unknown[0], members),
            file=file,
            field=f"{field}.{unknown[0]}" if field else unknown[0],
        )
    return UserError("missing required field", file=file, field=where)


# The key that chooses the member of each tagged union, by the tags' prefix.
TAG_KEYS = {"pool": "model", "model": "kind", "target": "kind", "arrivals": "process"}
TAG_KEYS |= {"sizes": "dist", "lengths": "dist"}


def _close(word: str, choices: list[str]) -> str:
    hint = did_you_mean(word, choices, "")
    return hint if "did you mean" in hint else ""


def _other_kinds_key(model: Any, loc: tuple[Any, ...]) -> bool:
    """Whether the unknown key at `loc` is a key of another member of a tagged union."""
    tag = str(loc[-2]) if len(loc) > 1 else ""
    return _TAG_MARK in tag and str(loc[-1]) in field_names(_annotation_at(model, loc[:-2]))


_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "finite_number": "must be finite",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "too_short": "needs at least {min_length} item(s)",
    "too_long": "takes at most {max_length} item(s)",
    "string_too_short": "must not be empty",
    "union_tag_invalid": "unknown kind",
}


def _literal_choices(annotation: Any) -> list[str]:
    """The values of a Literal annotation (through Optional), as strings."""
    for arg in _flatten(annotation):
        if typing.get_origin(arg) is typing.Literal:
            return [str(v) for v in typing.get_args(arg)]
    return []


def _flatten(annotation: Any) -> list[Any]:
    """Members of a union (Annotated unwrapped), or [annotation]."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_flatten(arg))
        return out
    return [annotation]


def field_names(annotation: Any) -> set[str]:
    """Keys a mapping at this annotation may hold (every member of a union)."""
    names: set[str] = set()
    for arg in _flatten(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            names.update(arg.model_fields)
    return names


def _step(annotation: Any, part: str | int) -> Any:
    """The annotation one step (key or index) below `annotation`; None if there is none."""
    found = []
    for arg in _flatten(annotation):
        origin = typing.get_origin(arg)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            info = arg.model_fields.get(str(part))
            if info is not None:
                found.append(info.annotation)
        elif origin in (list, tuple, Sequence) and _is_index(part):
            found.append(typing.get_args(arg)[0])
        elif origin in (dict, Mapping):
            found.append(typing.get_args(arg)[1])
    if not found:
        return None
    return found[0] if len(found) == 1 else typing.Union[tuple(found)]  # noqa: UP007


def _is_index(part: str | int) -> bool:
    return isinstance(part, int) or str(part).lstrip("-").isdigit()


def _annotation_at(model: Any, loc: Sequence[Any]) -> Any:
    """The annotation at `loc` inside `model` (union tags skipped)."""
    ann: Any = model
    for part in loc:
        if _TAG_MARK in str(part):
            ann = _tagged(ann, str(part)) or ann
            continue
        nxt = _step(ann, part)
        if nxt is None:
            return None
        ann = nxt
    return ann


def _tagged(annotation: Any, tag: str) -> Any:
    """The member of a tagged union (``Annotated[X, Tag(tag)]``, anywhere inside an
    Optional or Annotated) that `tag` names, or None."""
    if any(isinstance(m, Tag) and m.tag == tag for m in getattr(annotation, "__metadata__", ())):
        return typing.get_args(annotation)[0]
    for arg in typing.get_args(annotation):
        found = _tagged(arg, tag)
        if found is not None:
            return found
    return None


def check_path(model: type[BaseModel], path: Sequence[str], text: str) -> None:
    """Refuse a ``--set`` path that names no field of `model` (UserError, did-you-mean)."""
    ann: Any = model
    for i, part in enumerate(path):
        nxt = _step(ann, part)
        if nxt is None:
            where = ".".join(path[: i + 1])
            known = sorted(field_names(ann))
            if known:
                hint = did_you_mean(part, known, "expected one of")
                raise UserError(f"unknown path {where!r}{hint}", field="--set", value=text)
            raise UserError(
                f"cannot set {where!r}: {'.'.join(path[:i]) or 'it'} holds no keys",
                field="--set",
                value=text,
            )
        ann = nxt


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a config document (for editors validating YAML)."""
    return model.model_json_schema()
