"""A small GBNF interpreter for tests: parse the grammars lmprog writes, sample strings from them
and check whether a string is in the language (via an equivalent Python regex, recursion
unrolled to a fixed depth).

It covers the subset ``lmprog.format._grammar`` emits: string literals, character classes, rule
references, groups, ``|``, ``* + ?`` and ``{m,n}``. llama.cpp's own parser is the authority;
this one exists so that property tests can run without a model.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# A small pool of characters to draw from for negated classes (quotes, backslash, controls...).
_POOL = "abceEfuXYZ01789 +_-.,:;!?\"'\\/{}[]()\n\té€\x01\x7f"


@dataclass
class Node:
    kind: str  # "lit", "class", "ref", "seq", "alt", "rep"
    value: object = None
    items: list[Node] | None = None
    low: int = 0
    high: int | None = None


class TooDeep(Exception):
    """A sample recursed past the depth limit."""


def _decode_literal(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            nxt = body[i + 1]
            if nxt == "x":
                out.append(chr(int(body[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def ws(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in " \t":
            self.i += 1

    def alt(self) -> Node:
        options = [self.seq()]
        self.ws()
        while self.i < len(self.text) and self.text[self.i] == "|":
            self.i += 1
            options.append(self.seq())
            self.ws()
        return options[0] if len(options) == 1 else Node("alt", items=options)

    def seq(self) -> Node:
        items = []
        while True:
            self.ws()
            if self.i >= len(self.text) or self.text[self.i] in "|)":
                break
            items.append(self.postfix(self.atom()))
        return items[0] if len(items) == 1 else Node("seq", items=items)

    def atom(self) -> Node:
        char = self.text[self.i]
        if char == '"':
            j = self.i + 1
            while self.text[j] != '"':
                j += 2 if self.text[j] == "\\" else 1
            node = Node("lit", _decode_literal(self.text[self.i + 1 : j]))
            self.i = j + 1
            return node
        if char == "[":
            j = self.i + 1
            while self.text[j] != "]":
                j += 2 if self.text[j] == "\\" else 1
            node = Node("class", self.text[self.i : j + 1])
            self.i = j + 1
            return node
        if char == "(":
            self.i += 1
            node = self.alt()
            assert self.text[self.i] == ")", self.text[self.i :]
            self.i += 1
            return node
        match = re.compile(r"[A-Za-z][A-Za-z0-9_-]*").match(self.text, self.i)
        assert match, f"unexpected {self.text[self.i :]!r}"
        self.i = match.end()
        return Node("ref", match.group())

    def postfix(self, node: Node) -> Node:
        if self.i < len(self.text):
            char = self.text[self.i]
            bounds = {"*": (0, None), "+": (1, None), "?": (0, 1)}
            if char in bounds:
                self.i += 1
                low, high = bounds[char]
                return Node("rep", items=[node], low=low, high=high)
            match = re.compile(r"\{(\d+)(?:,(\d*))?\}").match(self.text, self.i)
            if match:
                self.i = match.end()
                low = int(match.group(1))
                high = low if match.group(2) is None else (int(match.group(2)) if match.group(2) else None)
                return Node("rep", items=[node], low=low, high=high)
        return node


class GBNF:
    """A parsed grammar: ``sample(rng)`` draws a string, ``matches(text)`` tests membership."""

    def __init__(self, text: str) -> None:
        self.rules: dict[str, Node] = {}
        for line in text.strip().splitlines():
            name, body = line.split("::=", 1)
            parser = _Parser(body.strip())
            node = parser.alt()
            assert parser.i == len(parser.text), f"trailing text in rule {name}: {parser.text[parser.i :]!r}"
            self.rules[name.strip()] = node
        for node in self.rules.values():
            self._check_refs(node)

    def _check_refs(self, node: Node) -> None:
        if node.kind == "ref":
            assert node.value in self.rules, f"undefined rule {node.value}"
        for item in node.items or []:
            self._check_refs(item)

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, rng: random.Random, max_depth: int = 12) -> str:
        return self._sample(self.rules["root"], rng, 0, max_depth)

    def _sample(self, node: Node, rng: random.Random, depth: int, limit: int) -> str:
        if depth > limit:
            raise TooDeep
        if node.kind == "lit":
            return str(node.value)
        if node.kind == "class":
            pattern = re.compile(str(node.value))
            choices = [c for c in _POOL if pattern.fullmatch(c)]
            return rng.choice(choices)
        if node.kind == "ref":
            return self._sample(self.rules[str(node.value)], rng, depth + 1, limit)
        assert node.items is not None
        if node.kind == "seq":
            return "".join(self._sample(item, rng, depth, limit) for item in node.items)
        if node.kind == "alt":
            return self._sample(rng.choice(node.items), rng, depth, limit)
        high = node.high if node.high is not None else node.low + 3
        count = rng.randint(node.low, min(high, node.low + 3))
        return "".join(self._sample(node.items[0], rng, depth + 1, limit) for _ in range(count))

    # -- membership ----------------------------------------------------------------------------
    def matches(self, text: str, depth: int = 6) -> bool:
        return re.fullmatch(self._regex(self.rules["root"], depth), text, re.DOTALL) is not None

    def _regex(self, node: Node, depth: int) -> str:
        if node.kind == "lit":
            return re.escape(str(node.value))
        if node.kind == "class":
            return str(node.value)
        if node.kind == "ref":
            return "(?!)" if depth <= 0 else self._regex(self.rules[str(node.value)], depth - 1)
        assert node.items is not None
        if node.kind == "seq":
            return "".join(f"(?:{self._regex(item, depth)})" for item in node.items)
        if node.kind == "alt":
            return "|".join(f"(?:{self._regex(item, depth)})" for item in node.items)
        high = "" if node.high is None else str(node.high)
        return f"(?:{self._regex(node.items[0], depth)}){{{node.low},{high}}}"
