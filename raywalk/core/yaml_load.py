"""Job text to plain data: PyYAML's safe loader, bounded and strict.

A job file may come from anyone, so its YAML is checked on the parser's event
stream before any object is built: nesting and alias expansion are bounded
(merged mappings count as the aliases they are), and no mapping may give a
key twice (anchors, aliases and merge keys keep YAML's meaning).
"""

from __future__ import annotations

from typing import Any

import yaml

from raywalk.core.limits import MAX_YAML_DEPTH, MAX_YAML_NODES
from raywalk.errors import JobError

__all__ = ["parse_yaml"]


def parse_yaml(text: str, source: str) -> Any:
    """The plain data of YAML `text` (read from `source`, named in errors).

    Raises:
        JobError: the text is not valid YAML, is nested or expands too far, or gives a key twice.
    """
    try:
        check_shape(text, source)
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise JobError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None


def check_shape(text: str, source: str) -> None:
    """Refuse YAML nested deeper than MAX_YAML_DEPTH or expanding (aliases included) to more than
    MAX_YAML_NODES nodes, from the parser's event stream: nothing is built, so an alias bomb or a
    20,000-deep list costs what reading it costs."""
    sizes: dict[str, int] = {}  # anchor -> expanded node count of its node
    stack: list[list[Any]] = []  # open collections: [anchor, expanded nodes inside]
    total = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
            size = sizes.get(event.anchor or "", 1) if isinstance(event, yaml.AliasEvent) else 1
            if isinstance(event, yaml.ScalarEvent) and event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 0])
            if len(stack) > MAX_YAML_DEPTH:
                raise JobError(f"{source}: nested more than {MAX_YAML_DEPTH} levels deep")
            continue
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, inside = stack.pop()
            size = 1 + inside
            if anchor:
                sizes[anchor] = size
        else:
            continue
        total += size
        if stack:
            stack[-1][1] += size
        if total > MAX_YAML_NODES:
            raise JobError(f"{source}: expands to more than {MAX_YAML_NODES} values (aliases included)")


_MERGE_TAG = "tag:yaml.org,2002:merge"


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last).

    Merge keys (`<<: *anchor`, `<<: [*a, *b]`, `<<: {...}`) keep YAML's semantics: a key written in
    the mapping overrides a merged one, and of the merged mappings the first that has a key wins. Only
    keys written twice in one mapping are refused.
    """

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Replace `node`'s merge keys by the pairs they merge, each key once, in YAML's order of precedence.

        PyYAML 6.0.4's own tells keys apart by the identity of their strings, so of two merged mappings
        that both set `width` the last one wins where the strings are not interned.

        Raises:
            ConstructorError: a merge key whose value is not a mapping or a list of mappings.
        """
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        written: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                if key_node.tag == "tag:yaml.org,2002:value":
                    key_node.tag = "tag:yaml.org,2002:str"
                written.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"expected a mapping or list of mappings for merging, but found {source.id}",
                        source.start_mark,
                    )
                self.flatten_mapping(source)
                merged.extend(source.value)
        if len(written) == len(node.value):
            return
        seen = {self._key(k) for k, _ in written}
        kept = []
        for key_node, value_node in merged:
            key = self._key(key_node)
            if key is None or key not in seen:  # the first merged mapping that sets a key wins
                if key is not None:
                    seen.add(key)
                kept.append((key_node, value_node))
        node.value = kept + written

    def _key(self, key_node: yaml.Node) -> Any:
        """A scalar key as the constructed mapping will hold it (None for other keys, which are not compared)."""
        if not isinstance(key_node, yaml.ScalarNode):
            return None
        key = self.construct_object(key_node)
        return key if isinstance(key, (str, int, float, bool)) else None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self._refuse_duplicates(node, deep)
        return super().construct_mapping(node, deep=deep)

    def _refuse_duplicates(self, node: yaml.MappingNode, deep: bool) -> None:
        """Raise ConstructorError for a key written twice in `node` or in a mapping merged into it."""
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:  # the merged mappings: their own keys are checked alike
                merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for mapping in merged:
                    if isinstance(mapping, yaml.MappingNode):
                        self._refuse_duplicates(mapping, deep)
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)
