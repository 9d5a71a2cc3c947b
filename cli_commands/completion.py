"""``gantry completion bash|zsh``: a completion script generated from the parser itself, so a
new command or option completes without anyone editing a script. zsh runs the bash function
through ``bashcompinit``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cli_commands.help import command

FUNCTION = "_gantry_complete"


@dataclass
class Node:
    """One command level: ``path`` is the words that lead to it (``sources sync``)."""

    path: str
    words: list[str] = field(default_factory=list)  # subcommands, options, positional choices
    subcommands: list[str] = field(default_factory=list)
    values: dict[str, list[str] | None] = field(default_factory=dict)  # option -> choices (None: any)


def nodes(parser: argparse.ArgumentParser, path: str = "") -> Iterator[Node]:
    node = Node(path)
    children: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                node.subcommands.append(name)
                children.append((name, sub))
        elif action.option_strings:
            node.words += action.option_strings
            if action.nargs != 0:
                choices = [str(c) for c in action.choices] if action.choices else None
                node.values |= dict.fromkeys(action.option_strings, choices)
        elif action.choices:
            node.words += [str(c) for c in action.choices]
    node.words = node.subcommands + node.words
    yield node
    for name, sub in children:
        yield from nodes(sub, f"{path} {name}".strip())


def _case(pattern: str) -> str:
    return '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bash_script(parser: argparse.ArgumentParser) -> str:
    tree = list(nodes(parser))
    descend = [
        f"{_case(f'{n.path}|{s}')}) path={_case(f'{n.path} {s}'.strip())} ;;"
        for n in tree
        for s in n.subcommands
    ]
    takes_value = [_case(f"{n.path}|{o}") for n in tree for o in n.values]
    value_cases = []
    for n in tree:
        for option, choices in n.values.items():
            reply = f'compgen -W "{" ".join(choices)}" -- "$cur"' if choices else 'compgen -f -- "$cur"'
            value_cases.append(f"{_case(f'{n.path}|{option}')}) COMPREPLY=($({reply})); return ;;")
    word_cases = [f'{_case(n.path)}) words="{" ".join(n.words)}" ;;' for n in tree]
    lines = [
        "# gantry completion for bash: source <(gantry completion bash)",
        f"{FUNCTION}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local path="" word words="" i skip=0',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        word="${COMP_WORDS[i]}"',
        "        if ((skip)); then skip=0; continue; fi",
        '        case "$path|$word" in',
        *(f"            {c}" for c in descend),
        "        esac",
        '        case "$path|$word" in',
        f"            {'|'.join(takes_value) or '__none__'}) skip=1 ;;",
        "        esac",
        "    done",
        '    case "$path|$prev" in',
        *(f"        {c}" for c in value_cases),
        "    esac",
        '    case "$path" in',
        *(f"        {c}" for c in word_cases),
        "    esac",
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "}",
        f"complete -F {FUNCTION} gantry",
    ]
    return "\n".join(lines) + "\n"


def zsh_script(parser: argparse.ArgumentParser) -> str:
    return (
        "#compdef gantry\n"
        "# gantry completion for zsh: source <(gantry completion zsh)\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(parser)
    )


def cmd_completion(_api: Any, args: argparse.Namespace) -> None:
    from cli import parser  # the whole parser, this command included

    print(zsh_script(parser()) if args.shell == "zsh" else bash_script(parser()), end="")


def add_completion_command(commands: Any) -> None:
    completion = command(
        commands,
        "completion",
        "print a shell completion script (bash or zsh)",
        "source <(gantry completion bash)   # in ~/.bashrc; zsh: source <(gantry completion zsh)",
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(run=cmd_completion)
