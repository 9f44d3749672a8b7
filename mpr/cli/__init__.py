"""`mpr`, the operator's command line.

Each command group is a module with a `register(commands)` function that adds its
subcommands and sets `handler` (an async function of the parsed arguments) on each of them;
`mpr.cli.main` collects the groups. What the groups share is in neutral modules, none of them a
lifecycle's: `mpr.cli.output` (printing, CliError, the handler and subcommand types),
`mpr.cli.arguments` (the actor, command payloads) and `mpr.cli.catalog_access` (the catalog
connection).
"""
