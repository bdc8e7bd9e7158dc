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
from edgefleet.cli.common import OutputOption, admin_client, fail, parsed
from edgefleet.cli.output import OutputFormat, print_json, print_table, with_ages
from edgefleet.settings import MAX_CONCURRENCY

app = typer.Typer(help="Standing concurrency for label groups and the whole fleet.")

RuleSelector = Annotated[
    str | None,
    typer.Option("--selector", "-l", help="The workers' labels: KEY=VALUE[,KEY=VALUE]."),
]
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
CHANGE_COLUMNS = [
    ("hostname", "HOSTNAME"),
    ("field", "FIELD"),
    ("old", "OLD"),
    ("new", "NEW"),
    ("desired_version", "DESIRED_V"),
]


def _which(selector: str | None, default: bool) -> dict[str, Any]:
    """The rule named on the command line: ``--selector`` or ``--default``, exactly one."""
    if default == (selector is not None):
        fail("name the rule with exactly one of --selector KEY=VALUE or --default", code=2)
    if default:
        return {"default": True}
    return {"selector": parsed(parsing.parse_selector, selector, "--selector")}


@app.command("set")
def set_rule(
    ctx: typer.Context,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-c", min=1, max=MAX_CONCURRENCY, help=f"1 to {MAX_CONCURRENCY}."
        ),
    ],
    selector: RuleSelector = None,
    default: Default = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Beyond EDGEFLEET_MAX_CONCURRENCY_PER_CPU for a worker."),
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Set a label rule or the fleet default; matching workers adopt it at once."""
    body = {**_which(selector, default), "concurrency": concurrency, "force": force}
    with admin_client(ctx) as client:
        result = client.put("/concurrency-rules", json=body)
    _report(result, output)


@app.command("remove")
def remove_rule(
    ctx: typer.Context,
    selector: RuleSelector = None,
    default: Default = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Remove a rule; the workers it decided for fall to the next layer down."""
    which = _which(selector, default)
    params = (
        {"default": "true"} if default else {"selector": parsing.format_selector(which["selector"])}
    )
    with admin_client(ctx) as client:
        result = client.delete("/concurrency-rules", params=params)
    _report(result, output)


@app.command("list")
def list_rules(ctx: typer.Context, output: OutputOption = OutputFormat.TABLE) -> None:
    """Every rule: the fleet default (``default``) and the label rules."""
    with admin_client(ctx) as client:
        rules = client.get("/concurrency-rules")
    if output is OutputFormat.JSON:
        print_json(rules)
    elif not rules:
        print("no concurrency rules: each worker runs at its operator override or its -c flag")
    else:
        print_table(with_ages(rules, ("set_at",)), RULE_COLUMNS)


def _report(result: dict[str, Any], output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        print_json(result)
        return
    rule = result["rule"]
    done = "removed" if result["removed"] else f"set to {rule['concurrency']}"
    print(f"{rule['source']} {rule['rule']}: {done}")
    changes = result["changes"]["changes"]
    if changes:
        print_table(changes, CHANGE_COLUMNS)
    else:
        print("no worker's concurrency changed")
