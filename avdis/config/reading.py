"""Reading a config: the YAML file, dotted overrides and a command's flags merged and validated into a `Config`,
local paths made absolute, and pydantic's errors told as `ConfigError` lines naming the key and how to fix it."""

from __future__ import annotations

import datetime
import difflib
import os
import re
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from avdis.config.schema import Config, fields_along, setting_of
from avdis.errors import UsageError


class ConfigError(UsageError):
    """A config that cannot be used; the message says where and how to fix it."""


_DOTTED_KEYS = "sweep.space.params."  # a mapping whose keys are dotted paths: sweep.space.params.train.lr=[...]


def _set_dotted(tree: dict[str, Any], path: str, value: Any) -> None:
    node = tree
    parts = (_DOTTED_KEYS[:-1].split(".") + [path.removeprefix(_DOTTED_KEYS)] if path.startswith(_DOTTED_KEYS)
             else path.split("."))
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {path}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _comment_of(raw: str) -> str:
    """The text of `raw` YAML leaves out as a comment ("" when none): whatever follows the last node it parsed."""
    nodes = (yaml.ScalarEvent, yaml.SequenceEndEvent, yaml.MappingEndEvent)
    end = max((event.end_mark.index for event in yaml.parse(raw) if isinstance(event, nodes)), default=0)
    return raw[end:].strip()


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["train.epochs=3", "method.name=adversarial"]` -> nested dict (values parsed as YAML). Each override is merged
    into those before it, as they are into the file: a section given as a value (`train={lr: 0.1}`) replaced what an
    earlier one set in it (`train.epochs=3` dropped, in silence); a setting given again takes the later value."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override {item!r}: expected dotted.key=value, e.g. train.epochs=3")
        try:
            value = _read_yaml(raw, key) if raw != "" else ""  # a key twice is refused, as in a file
            dropped = _comment_of(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
        if dropped:
            raise ConfigError(f"override {item!r}: {dropped!r} is a YAML comment, so the value would be {value!r}; "
                              f"quote the value to keep it whole: {key}='\"{raw}\"'")
        if value is None and raw.strip() == "~" and key in _FOLDERS_NEVER_NULL:
            # the home folder, as a shell reads it and as `~/x` is: YAML's null was refused for these as "not a valid
            # string (got None)". Where null means something (sweep.checkpoints: the sweep's folder) ~ stays null
            value = "~"
        own: dict[str, Any] = {}
        _set_dotted(own, key, value)
        try:
            tree = merge(tree, own)
        except ConfigError as exc:  # a section over a value an earlier override gave (method=x method.weight=1)
            raise ConfigError(f"override {item!r}: {exc}") from None
    return tree


def _section_hint(path: tuple[str, ...], value: Any) -> str:
    """How to write `path: value` as the section it must be (`write method: {name: adversarial}`), or that it is a
    setting of one value, with no keys under it (`train.epochs.max=5`: it was told to write train.epochs as a section)."""
    dotted = ".".join(path)
    owner = _field_model(Config, path)
    if owner is None:
        along = fields_along(dotted)
        if len(along) == len(path) and get_origin(along[-1].annotation) is not dict:
            return f"it takes one value, with no keys under it: give {dotted}=VALUE"
        return f"write {dotted}: {{key: value}}"
    name = owner.model_fields.get("name")
    if name is not None and isinstance(value, str) and value in get_args(name.annotation):
        return f"write {dotted}: {{name: {value}}}"
    return f"write {dotted}: {{key: value}} with keys from {', '.join(owner.model_fields)}"


def merge(base: dict[str, Any], extra: dict[str, Any], at: tuple[str, ...] = ()) -> dict[str, Any]:
    """Deep merge: sections merge, values in `extra` win.

    A section in `extra` over a value in `base` is an error: dropping the value would
    silently train on defaults. An entry of a mapping setting (sweep.space.weights, sweep.space.params) is replaced:
    its value may be a range as well as a number or a list of choices, and a range over a file's choices was refused
    as "not a section" (the hint asking for the range just given).
    """
    out = dict(base)
    for key, value in extra.items():
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            out[key] = merge(current, value, (*at, key))
        elif isinstance(value, dict) and current is not None and not _is_mapping_setting(at):
            path = (*at, key)
            raise ConfigError(
                f"{'.'.join(path)} is a value ({current}), not a section; {_section_hint(path, current)}"
            )
        else:
            out[key] = value
    return out


def _is_mapping_setting(path: tuple[str, ...]) -> bool:
    """Whether `path` is a setting whose value is a mapping of the user's keys (sweep.space.params)."""
    along = fields_along(".".join(path))
    return bool(path) and len(along) == len(path) and get_origin(along[-1].annotation) is dict


def _field_model(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at `loc` (to list its allowed keys): through sections, the values of a
    mapping setting and the member of a union pydantic names in `loc` (a range of sweep.space.weights or
    sweep.space.params, whose misspelt key listed no allowed keys)."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is not None:
            if part not in fields:
                return None
            current = fields[part].annotation
        elif get_origin(current) is dict:  # `part` is the user's key
            current = get_args(current)[1]
        else:  # a union: `part` names the member tried, e.g. "function-after[_check(), Range]"
            current = next((m for m in get_args(current) if isinstance(m, type) and issubclass(m, BaseModel)
                            and re.search(rf"\b{m.__name__}\b", str(part))), None)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


# what YAML reads an unquoted value as, where a name or path was meant
_YAML_READS = {int: "a number", float: "a number", datetime.date: "a date", datetime.datetime: "a date and time"}


def describe(error: ValidationError, model: type[BaseModel] | None = None, source: str = "config",
             flags: dict[str, str] | None = None) -> str:
    """One line per problem: `source: key.path: what is wrong (allowed ...)`; a setting a command's flag gave (in
    `flags`, setting -> flag) as `--flag: what is wrong`: the user typed the flag, not the setting."""
    model = model or Config
    lines = []
    for err in error.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc if not str(p).startswith("function-after")) or "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            owner = _field_model(model, loc[:-1])
            allowed = sorted(owner.model_fields) if owner else []
            near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)  # train.epoch: one letter off a setting
            msg = (f"unknown key; allowed keys here: {', '.join(allowed)}"
                   + (f"; did you mean {near[0]}?" if near else ""))
            head, dot, rest = str(loc[-1]).partition(".")
            if dot and model is Config and setting_of(path) == path:  # `train.epochs: 5` in a file: "unknown" as is
                msg = (f"YAML reads a dotted key as one name (dots nest settings only in a key=value's key), so it "
                       f"names no setting; write {head}: {{{rest}: ...}}")
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
            msg = f"{msg} (got {err['input']!r})"
            read_as = _YAML_READS.get(type(err["input"]))  # sweep.name=007 read as 7, sweep.name=2026-12-03 as a date
            if err["type"] == "string_type" and read_as == "a date and time":  # its text (T, Z) is lost: no example
                msg += (f"; YAML read the value as {read_as}: quote it to keep it as text, in a file or on the command "
                        f"line (\"{path}='...'\")")
            elif err["type"] == "string_type" and err["input"] is None and path in _FOLDERS_NEVER_NULL:
                msg += "; YAML reads ~ or null as no value: give a folder (quoted, '~' is the home folder)"
            elif err["type"] == "string_type" and read_as:
                shown = str(err["input"]) if read_as == "a date" else "007"  # a number's text is lost: an example
                msg += (f"; YAML read the value as {read_as}: quote it to keep it as written ('{shown}' in a file, "
                        f"\"{path}='{shown}'\" on the command line)")
        lines.append(f"{flags[path]}: {msg}" if path in (flags or {}) else f"{source}: {path}: {msg}")
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: YAML keeps the last silently, so a second
    `train:` section would drop the first. Merge keys (`<<: *anchor`) stay YAML's."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # refused by SafeLoader itself, with its own message
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found the key {key!r} twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _empty_sections_dropped(raw: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """`raw` without the sections a file leaves empty (`train:` with every line under it commented out is YAML's
    null, refused as no mapping): an empty section keeps its defaults, as a section left out does. So does an empty
    mapping setting (`params:` with its one entry commented out in local.yaml, refused the same way)."""
    out = {}
    for key, value in raw.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        sub = field.annotation if field is not None else None
        if value is None and get_origin(sub) is dict:
            continue
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            if value is None:
                continue
            if isinstance(value, dict):
                value = _empty_sections_dropped(value, sub)
        out[key] = value
    return out


def _read_yaml(text: str, name: str) -> Any:
    """`text` as YAML (keys once each), its error marks naming the file `name` ("<unicode string>" otherwise)."""
    loader = _UniqueKeyLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


# Settings (section.key) read only under some values of another (the mode), which the validators refuse elsewhere
# (`TrainConfig._check`): (setting, mode, whether a value of the mode reads it). Refused by validation, a config file's
# is dropped before it where the command line chose a mode that leaves it unread (`_left_alone`). Those the command
# refuses instead, where it starts work, are `avdis.cli.reads.READ_ONLY_UNDER`'s (a file's is kept there): each setting
# is in one table.
_UNSET = object()
READ_ONLY_WITH: tuple[tuple[str, str, Callable[[Any], bool]], ...] = (
    *((f"train.{key}", "train.strategy", lambda strategy: strategy == "deepspeed")
      for key in ("zero_stage", "offload_optimizer", "offload_params")),
    ("train.offload_params", "train.zero_stage", lambda stage: stage == 3),
    ("train.offload_optimizer", "train.zero_stage", lambda stage: isinstance(stage, int) and stage >= 1),
    ("train.workers", "train.strategy", lambda strategy: strategy != "single"),
)


def _left_alone(raw: dict[str, Any], line: list[dict[str, Any]]) -> dict[str, Any]:
    """The config file's `raw` less its settings the command line (`line`: the trees of its flags and overrides)
    chose a mode of that does not read them (`READ_ONLY_WITH`), where the command line did not give them too: the
    README's rule, a file's setting is left alone where the command line chose the mode that ignores it. The run is
    then as without them (its name and recorded settings too). A setting the file's own mode does not read (its
    strategy: ddp with a zero_stage) is kept, and refused. `--strategy single` on smoke.yaml, whose zero_stage=2
    is DeepSpeed's, was refused as "zero_stage=2 shards state only under strategy=deepspeed"."""

    def at(tree: Any, path: str) -> Any:
        for part in path.split("."):
            tree = tree.get(part, _UNSET) if isinstance(tree, dict) else _UNSET
        return tree

    def chose(path: str) -> Any:
        return next((v for v in (at(t, path) for t in reversed(line)) if v is not _UNSET), _UNSET)

    def own(mode: str) -> Any:  # the file's mode, else its default: a file setting its mode does not read is refused
        value = at(raw, mode)
        return fields_along(mode)[-1].default if value is _UNSET else value

    dropped = {setting for setting, mode, reads in READ_ONLY_WITH
               if at(raw, setting) is not _UNSET and chose(setting) is _UNSET and reads(own(mode))
               and (choice := chose(mode)) is not _UNSET and not reads(choice)}
    out = raw
    for setting in dropped:
        section, key = setting.split(".")
        out = {**out, section: {k: v for k, v in out[section].items() if k != key}}
    return out


def load(path: str | Path | None = None, overrides: list[str] | None = None,
         values: dict[str, Any] | None = None, flags: dict[str, str] | None = None) -> Config:
    """Read a YAML config (or the defaults), apply dotted overrides, validate. `values` are dotted settings given
    as values (a command's own flags: `--name "run #2"` is that name, not YAML whose comment cut it to "run");
    `flags` names the flag that gave each (setting -> flag), for a refusal to name as the user typed it."""
    raw: dict[str, Any] = {}
    source = str(path) if path else "defaults"
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"{p}: is a folder, not a config file; pass --config with a YAML file (see jobs/configs/)")
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found; pass --config with an existing YAML file")
        try:
            raw = _read_yaml(p.read_text(encoding="utf-8"), str(p)) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
        except yaml.YAMLError as exc:
            tabs = f"\n{p}: indent with spaces; YAML takes no tabs there" if "'\\t'" in str(exc) else ""
            raise ConfigError(f"{p}: not valid YAML: {exc}{tabs}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections (data, model, ...)")
        raw = _empty_sections_dropped(raw, Config)
    given: dict[str, Any] = {}
    for key, value in (values or {}).items():
        _set_dotted(given, key, value)
    tree = parse_overrides(overrides) if overrides else {}
    raw = _left_alone(raw, [given, tree])
    if values:
        raw = merge(raw, given)
        source += " + flags"
    if overrides:
        try:
            raw = merge(raw, tree)
        except ConfigError as exc:
            raise ConfigError(f"{source} + overrides: {exc}") from None
        source += " + overrides"
    return validate(raw, source, flags)


# Local paths are made absolute at the edge: Ray workers run in other directories.
PATH_FIELDS = (("data", "src"), ("data", "shards"), ("train", "storage"), ("sweep", "storage"),
               ("sweep", "checkpoints"), ("ray", "cluster_file"))
_FOLDERS_NEVER_NULL = ("data.src", "data.shards", "train.storage", "sweep.storage")  # an override's ~: the home folder


def local_path(value: str, field: str) -> str:
    """A local path as avdis keeps it: `~` expanded, absolute and normalised (`a/../b` is `b`: one spelling per
    folder, as run names hash it)."""
    try:
        return os.path.abspath(Path(value.removeprefix("file://")).expanduser())
    except RuntimeError as exc:  # ~nosuchuser
        raise ConfigError(f"{field}: {value}: {exc}; give the folder's full path") from None


def _absolute(cfg: Config, flags: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings `cfg` was given, its local paths (defaults among them) absolute. Only those given: a section's
    `model_fields_set` then still tells a setting given from one left at its default (`shards.check_synth`). A
    refusal names a path by its flag where one in `flags` gave it."""
    out = cfg.model_dump(mode="json", exclude_unset=True)
    for section, key in PATH_FIELDS:
        value = getattr(getattr(cfg, section), key)
        if isinstance(value, str) and ("://" not in value or value.startswith("file://")):
            field = f"{section}.{key}"
            out[section] = {**out.get(section, {}), key: local_path(value, (flags or {}).get(field, field))}
    return out


def validate(raw: dict[str, Any], source: str = "config", flags: dict[str, str] | None = None) -> Config:
    """`raw` as a Config; `flags` (setting -> flag) names what a refusal names by the flag the user gave it."""
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(exc, Config, source, flags)) from None
    return Config.model_validate(_absolute(cfg, flags))


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A copy of `cfg` with flat dotted overrides applied and validated again (what `cfg` was given stays given)."""
    tree: dict[str, Any] = {}
    for key, value in overrides.items():
        _set_dotted(tree, key, value)
    return validate(merge(cfg.model_dump(mode="json", exclude_unset=True), tree), "config + trial parameters")
