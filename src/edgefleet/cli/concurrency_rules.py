"""``edgefleet concurrency-rule ...``: standing concurrency for label groups and the fleet.

A label rule (``--selector site=plant1``) gives every worker with those labels a concurrency,
workers that join later included; the fleet default (``--default``) gives every worker no
label rule matches one. An operator override (``set-worker-concurrency``) wins over both, and
both win over a worker's own ``-c`` flag. When several label rules match a worker, the one
with the most keys wins, and among as many keys the one set last.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from edgefleet import parsing
from edgefleet.cli.common import ConcurrencyOption, ForceOption, OutputOption, SelectorOption
from edgefleet.cli.context import call, selector_or
from edgefleet.cli.output import OutputFormat, print_listing, print_rule_change, with_ages

app = typer.Typer(help="Standing concurrency for label groups and the whole fleet.")

Default = Annotated[
    bool, typer.Option("--default", help="The fleet default: every worker no label rule matches.")
]
RULE_COLUMNS = [
    ("rule", "RULE"),
    ("source", "SOURCE"),
    ("concurrency", "CONCURRENCY"),
    ("set_by", "SET_BY"),
    ("set_at", "SET_AT"),
]


def _which(selector: str | None, default: bool) -> dict[str, Any]:
    """The rule named on the command line: ``--selector`` or ``--default``, exactly one."""
    return selector_or(selector, default, "default", "the rule")


@app.command("set")
def set_rule(
    ctx: typer.Context,
    concurrency: ConcurrencyOption,
    selector: SelectorOption = None,
    default: Default = False,
    force: ForceOption = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Set a label rule or the fleet default; matching workers adopt it at once."""
    body = {**_which(selector, default), "concurrency": concurrency, "force": force}
    _report(call(ctx, "PUT", "/concurrency-rules", json=body), output)


@app.command("remove")
def remove_rule(
    ctx: typer.Context,
    selector: SelectorOption = None,
    default: Default = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Remove a rule; the workers it decided for fall to the next layer down."""
    which = _which(selector, default)
    params = (
        {"default": "true"} if default else {"selector": parsing.format_selector(which["selector"])}
    )
    _report(call(ctx, "DELETE", "/concurrency-rules", params=params), output)


@app.command("list")
def list_rules(ctx: typer.Context, output: OutputOption = OutputFormat.TABLE) -> None:
    """Every rule: the fleet default (named default) and the label rules."""
    print_listing(
        call(ctx, "GET", "/concurrency-rules"),
        output,
        RULE_COLUMNS,
        lambda rules: with_ages(rules, ("set_at",)),
        empty="no concurrency rules: each worker runs at its operator override or its -c flag",
    )


def _report(result: dict[str, Any], output: OutputFormat) -> None:
    rule = result["rule"]
    done = "removed" if result["removed"] else f"set to {rule['concurrency']}"
    print_rule_change(result, output, f"{rule['source']} {rule['rule']}: {done}")
